"""Speech-to-text: Whisper on faster-whisper (CTranslate2) behind a batching deployment."""
