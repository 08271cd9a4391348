"""python -m sqld.edge.auth NAME [--md5]: read a password and print a users-file line for NAME.

The password comes from the terminal (asked twice) or, when stdin is not a terminal, from
its first line. The line holds a SCRAM-SHA-256 verifier (or an md5 hash with --md5), never
the password itself.
"""
from __future__ import annotations

import getpass
import sys

from sqld.edge.auth import userfile


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--md5"]
    if len(args) != 1 or ":" in args[0] or not args[0]:
        print("usage: python -m sqld.edge.auth NAME [--md5]   (NAME without ':')", file=sys.stderr)
        return 2
    name = args[0]
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    secret = userfile.md5_hash(password, name) if "--md5" in argv else userfile.scram_verifier(password).text()
    print(f"{name}:{secret}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
