#!/usr/bin/env python3
"""Regenerate the committed Python stubs for the wire contract.

Usage: python proto/generate.py [--out DIR]

The generated modules sit beside the .proto files (proto/certfleet/v1/) and
are imported as ``certfleet.v1``. Tool versions are pinned so that the output
is reproducible; tests/test_proto_fresh.py fails when the committed stubs
differ from what this script makes.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import sys

PINS = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}
PROTO_ROOT = pathlib.Path(__file__).resolve().parent


def check_pins() -> None:
    wrong = []
    for dist, want in PINS.items():
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            have = "not installed"
        if have != want:
            wrong.append(f"{dist}=={want} (have {have})")
    if wrong:
        sys.exit("generate.py needs " + ", ".join(wrong) + "; pip install " + " ".join(f"{d}=={v}" for d, v in PINS.items()))


def generate(out: pathlib.Path) -> None:
    import os

    import grpc_tools
    from grpc_tools import protoc

    # protoc finds the mypy plugins on PATH: use the ones beside this interpreter.
    os.environ["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "certfleet").rglob("*.proto"))
    include = str(pathlib.Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        sys.exit(f"protoc failed with exit code {rc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=PROTO_ROOT, help="output root (default: proto/)")
    ns = parser.parse_args()
    check_pins()
    ns.out.mkdir(parents=True, exist_ok=True)
    generate(ns.out)


if __name__ == "__main__":
    main()
