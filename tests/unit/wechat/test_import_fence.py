"""app/wechat is a library: no Flask, SQLAlchemy, Jinja or other app.* imports (DESIGN §2)."""

import ast
from pathlib import Path

import app.wechat

PACKAGE = Path(app.wechat.__file__).parent
FORBIDDEN_ROOTS = {"flask", "sqlalchemy", "jinja2", "werkzeug", "alembic", "markupsafe", "wtforms"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports stay inside app.wechat by construction
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names = [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if root in FORBIDDEN_ROOTS or root.startswith("flask_"):
                found.append(f"{path.name}:{node.lineno} imports {name}")
            elif root == "app" and name != "app.wechat" and not name.startswith("app.wechat."):
                found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


def test_no_forbidden_imports() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) >= 8
    problems = [v for module in modules for v in _violations(module)]
    assert problems == []


def test_fence_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import flask\nfrom flask_login import x\nfrom sqlalchemy.orm import y\n"
        "import jinja2\nfrom app.models import z\nfrom app import extensions\n"
        "from app.wechat.crypto import ok\n__import__('sqlalchemy')\n"
    )
    assert len(_violations(bad)) == 7
