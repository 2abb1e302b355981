"""python -m ops.keys new --id ID --tenant T [--scopes ...] [--models ...] [--rpm N] ...

`new` prints the key once (give it to the tenant; it is stored nowhere) and the entry to add
to the keys file (it holds only the key's sha256). `check FILE` validates a keys file.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import yaml

from recipes.tenants import KEY_PREFIX, ApiKey, AuthSpec, hash_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.keys", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="make a key; print it and its keys-file entry")
    new.add_argument("--id", required=True)
    new.add_argument("--tenant", required=True)
    new.add_argument("--scopes", nargs="+", default=["inference"])
    new.add_argument("--models", nargs="+", default=["*"])
    new.add_argument("--pools", nargs="+", default=["*"])
    new.add_argument("--rpm", type=int)
    new.add_argument("--tpm", type=int)
    new.add_argument("--max-concurrent", type=int)
    check = sub.add_parser("check", help="validate a keys file")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    if args.command == "check":
        try:
            keys = AuthSpec(keys_file=str(args.file.resolve())).load()
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
        assert keys is not None
        print(f"ok: {len(keys.keys)} key(s), tenants: {sorted({k.tenant for k in keys.keys})}")
        return 0
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = ApiKey(
        id=args.id,
        tenant=args.tenant,
        sha256=hash_key(token),
        scopes=args.scopes,
        models=args.models,
        pools=args.pools,
        rpm=args.rpm,
        tpm=args.tpm,
        max_concurrent=args.max_concurrent,
    )
    print(f"# the key (shown once; give it to the tenant): {token}", file=sys.stderr, flush=True)
    print(yaml.safe_dump([entry.model_dump(exclude_none=True)], sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
