"""The code's git identity (densenet/gitinfo.py): HEAD's SHA, marked -dirty when tracked files
differ from it, as `git describe --dirty` marks it."""

import subprocess

from densenet import envinfo, gitinfo


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo)] + list(args), check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    git(repo, "add", "code.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return repo, git(repo, "rev-parse", "HEAD")


def test_clean_checkout_is_its_sha_and_untracked_files_do_not_count(tmp_path):
    repo, sha = make_repo(tmp_path)
    assert gitinfo.describe(str(repo)) == sha and len(sha) == 40
    (repo / "scratch.txt").write_text("not tracked\n")
    assert gitinfo.describe(str(repo)) == sha


def test_changed_tracked_file_is_dirty(tmp_path):
    repo, sha = make_repo(tmp_path)
    (repo / "code.py").write_text("x = 2\n")
    assert gitinfo.describe(str(repo)) == sha + "-dirty"
    git(repo, "add", "code.py")  # staged but not committed: still not HEAD's code
    assert gitinfo.describe(str(repo)) == sha + "-dirty"


def test_outside_a_checkout_is_none(tmp_path):
    assert gitinfo.describe(str(tmp_path)) is None
    assert gitinfo.describe(str(tmp_path / "does-not-exist")) is None


def test_the_runner_s_view_wins_inside_a_container(monkeypatch):
    monkeypatch.setenv("DENSENET_GIT_SHA", "0123abcd-dirty")
    assert envinfo.git_sha() == "0123abcd-dirty"
