import subprocess

from repro.harness import book, execute


def test_a_book_with_fresh_stamps_executes_nothing(monkeypatch):
    monkeypatch.setattr(execute, "stale", lambda papers: {})
    monkeypatch.setattr(execute, "run_many", lambda *a, **k: (_ for _ in ()).throw(AssertionError("executed")))
    commands = []
    monkeypatch.setattr(book.subprocess, "run", lambda cmd, **kw: commands.append(cmd)
                        or subprocess.CompletedProcess(cmd, 0, "", ""))
    messages = []
    assert book.build(echo=messages.append) == 0
    assert commands and commands[0][1:3] == ["build", str(book.checkout.root())] and "-W" in commands[0]
    assert any("up to date" in m for m in messages)


def test_stale_notebooks_are_refreshed_first_and_a_failure_stops_the_build(monkeypatch, tiny_paper):
    monkeypatch.setattr(book.catalog, "with_notebooks", lambda: [tiny_paper])
    monkeypatch.setattr(execute, "stale", lambda papers: {tiny_paper: ["its code cells changed"]})
    failed = execute.Outcome("tiny", execute.EXIT_CLAIMS, "", "", {}, 1.0, "ClaimsFailed: ...")
    monkeypatch.setattr(execute, "refresh", lambda papers, **kw: [failed])
    monkeypatch.setattr(book.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    messages = []
    assert book.build(echo=messages.append) == 1
    assert any("FAILED tiny" in m for m in messages) and any("not built" in m for m in messages)
