"""Request and response models of the public API (OpenAI and Cohere/Jina shapes): the contract."""
