"""The README's audit map: every equation's function and test exist, and every public
function of the learner (metarl.py) has a row, so that the map cannot fall behind the code."""
import ast
import importlib
import re
from pathlib import Path

from conftest import project_imports

REPO = Path(__file__).resolve().parent.parent


def audit_rows():
    """(function, fused twin or '', test) of every row of the README's audit map."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text[text.index("<!-- audit map"):text.index("<!-- end of audit map -->")]
    rows = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            rows.append(tuple(c.strip("`") for c in cells[1:]))
    return rows


def defined_functions(path):
    """Names of the top-level functions defined in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_name_in_the_audit_map_exists():
    rows = audit_rows()
    assert len(rows) > 40
    for function, twin, test in rows:
        for name in filter(None, (function, twin)):
            module, attr = name.split(".")
            assert callable(getattr(importlib.import_module(module), attr, None)), name
        test_file, test_name = test.split("::")
        assert test_name in defined_functions(REPO / test_file), test


def test_every_public_function_of_the_learner_is_in_the_audit_map():
    mapped = {function for function, _, _ in audit_rows()}
    public = {f"metarl.{name}" for name in defined_functions(REPO / "metarl.py")
              if not name.startswith("_")}
    assert public - mapped == set(), "not in the README's audit map"


def test_every_kernel_named_as_a_twin_replaces_the_function_of_its_row():
    """A fused twin's docstring names the textbook function of its row (or the row's function
    names it), so that the pairing is stated in the code too."""
    import kernels
    import metarl
    for function, twin, _ in audit_rows():
        if twin:
            twin_doc = getattr(kernels, twin.split(".")[1]).__doc__ or ""
            book_doc = getattr(metarl, function.split(".")[1]).__doc__ or ""
            assert function in twin_doc or twin in book_doc, (function, twin)


def test_the_module_map_lists_every_module_each_below_all_it_imports():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## Module map"):text.index("## Notation")]
    order = re.findall(r"^\| `(\w+)\.py` \|", block, re.M)
    modules = {p.stem for p in REPO.glob("*.py")}
    assert sorted(order) == sorted(modules)
    for module in order:
        above = set(order[:order.index(module)])
        source = (REPO / f"{module}.py").read_text(encoding="utf-8")
        assert project_imports(source, modules) - {module} <= above, module
