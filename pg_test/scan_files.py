#!/usr/bin/env python3
"""Search every file under a path for byte strings; exit 1 if any is found.

  scan_files.py PATH [--text S ...] [--hex HEX ...] [--uuid U ...]

--text looks for the UTF-8 bytes of S, --hex for the raw bytes HEX encodes
(a key), --uuid for the 16 binary bytes of a UUID (how PostgreSQL stores it).
Prints where each needle was found (never the needle itself).
"""
import os
import sys


def needles(argv):
    out, mode = [], None
    for arg in argv:
        if arg in ("--text", "--hex", "--uuid"):
            mode = arg
        elif mode == "--text":
            out.append(arg.encode())
        elif mode == "--hex":
            out.append(bytes.fromhex(arg))
        elif mode == "--uuid":
            out.append(bytes.fromhex(arg.replace("-", "")))
    return out


def files(root):
    if os.path.isfile(root):
        yield root
        return
    for d, _, names in os.walk(root):
        for n in names:
            yield os.path.join(d, n)


def main():
    root, wanted = sys.argv[1], needles(sys.argv[2:])
    found = 0
    scanned = 0
    for path in files(root):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        scanned += 1
        for i, n in enumerate(wanted):
            if n and n in data:
                found += 1
                print(f"needle #{i} found in {path}")
    # Nothing read (a wrong path, a directory emptied) must not read as
    # "nothing found"; nor must a scan for no needle at all.
    if scanned == 0 or not any(wanted):
        print(f"scanned {scanned} files for {sum(1 for n in wanted if n)} needles: nothing to judge")
        sys.exit(2)
    sys.exit(1 if found else 0)


main()
