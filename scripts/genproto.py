"""Generate the protobuf/gRPC stubs into the quarantined package ``agentceiling._gen``.

protoc writes absolute imports such as ``from agentceiling.v1 import x_pb2``; they are rewritten
to ``agentceiling._gen.agentceiling.v1`` so that the generated code lives in one package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "src" / "agentceiling" / "_gen"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    packages = sorted({Path(p).parts[0] for p in protos})
    OUT.mkdir(parents=True, exist_ok=True)
    import grpc_tools

    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *protos,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    pattern = re.compile(r"^(from|import) (" + "|".join(map(re.escape, packages)) + r")(\.|\s)", re.M)
    for path in OUT.rglob("*.py*"):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        new = pattern.sub(lambda m: f"{m.group(1)} agentceiling._gen.{m.group(2)}{m.group(3)}", text)
        if new != text:
            path.write_text(new)
    for d in [OUT, *(p for p in OUT.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        init = d / "__init__.py"
        if not init.exists():
            init.write_text("")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
