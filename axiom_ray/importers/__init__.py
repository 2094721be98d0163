"""Importers: turn public problem collections into axiom-ray problem files (docs/design.md, "Problem file").

Run by ``scripts/import_problems.py``; the results are vendored in ``problems/`` so that nothing
here runs when problems are loaded. Pure standard library plus the sandbox (no Ray, no torch).

    mbpp.py     MultiPL-E's "reworded" MBPP (CC-BY-4.0) -> problems/mbpp.jsonl
    codeio.py   CodeI/O rows of reasoning-gym (Apache-2.0) -> problems/codeio.jsonl
    capture.py  run code in the sandbox and bring its return values back (for reference outputs)
"""
