"""The import structure stays layered: the contracts of ``pyproject.toml`` (import-linter), the
rule that ``snn/`` imports only torch and itself, and the README's layout table against the tree."""

import ast
import logging
import re
import sys
from pathlib import Path

from importlinter.cli import lint_imports

PACKAGE = Path(__file__).resolve().parents[1] / "streamsnn"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_import_contracts_hold(root, capsys):
    loggers = [x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    enabled = [x for x in loggers if not x.disabled]
    try:
        code = lint_imports(config_filename=str(root / "pyproject.toml"), no_cache=True, no_logo=True)
    finally:  # import-linter configures its logging with dictConfig, which disables every other logger
        for logger in enabled:
            logger.disabled = False
    assert code == 0, capsys.readouterr().out


def test_snn_imports_only_torch_and_itself():
    for path in sorted((PACKAGE / "snn").glob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            allowed = top in sys.stdlib_module_names or top == "torch" or module.startswith("streamsnn.snn")
            assert allowed, f"{path.name} imports {module}"


def layout_table(root: Path) -> dict[str, str]:
    """The README's layout table: every path its first column names (a bare name after the first
    is in that one's folder) → the row's description."""
    text = (root / "README.md").read_text()
    table = text[text.index("## Layout") :].split("\n## ")[0]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            cells = line.split("|")
            paths = re.findall(r"`([\w/.]+)`", cells[1])
            folder = paths[0].rsplit("/", 1)[0] + "/" if "/" in paths[0].rstrip("/") else ""
            for path in paths:
                rows[path if "/" in path else folder + path] = cells[2]
    return rows


def test_the_readme_layout_table_matches_the_tree(root):
    rows = layout_table(root)
    for path in rows:
        assert (root / path).exists(), f"the README's layout names {path}, which is not in the tree"
    for module in sorted(PACKAGE.rglob("*.py")):
        rel = module.relative_to(root).as_posix()
        if module.name == "__init__.py":
            continue
        folder = module.parent.relative_to(root).as_posix() + "/"
        listed = rel in rows or f"`{module.name}`" in rows.get(folder, "")
        assert listed, f"{rel} is missing from the README's layout table"
