"""The previous release's costmeshd, built from git history: the state of the branch (first-parent
history) just before its newest migration came in. Built once per commit, without sanitizers, under
build/previous/COMMIT (kept between runs; `make clean` removes it)."""

import glob
import os
import shutil
import subprocess

from harness import REPO, HarnessError


def _git(*args):
    p = subprocess.run(["git", "-C", REPO] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise HarnessError("git %s: %s" % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode().strip()


def newest_migration():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "schema", "*.sql")))[-1]


def previous_commit(migration):
    """The first parent of the first-parent commit that brought schema/MIGRATION in."""
    came = _git("rev-list", "--first-parent", "HEAD", "--", "schema/" + migration).split()
    if not came:
        raise HarnessError("schema/%s is in no commit of HEAD's history (a shallow clone? it needs full"
                           " history, or commit the migration)" % migration)
    return _git("rev-parse", came[-1] + "^1")


def build(commit, log):
    """Path of the costmeshd built from commit (the build's output goes to log)."""
    top = os.path.join(REPO, "build", "previous", commit)
    binary = os.path.join(top, "build", "costmeshd")
    if os.access(binary, os.X_OK):
        return binary
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    try:
        archive = subprocess.Popen(["git", "-C", REPO, "archive", commit], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", top], stdin=archive.stdout, check=True, timeout=120)
        if archive.wait(60) != 0:
            raise HarnessError("git archive %s failed" % commit)
        # Its own flags: the old tree need not be warning-free under this compiler.
        p = subprocess.run(["make", "-C", top, "-j2", "BUILD=build", "SANITIZER=", "WERROR=0", "CFLAGS=-O1",
                            "build/costmeshd"], stdout=log, stderr=subprocess.STDOUT, timeout=900)
        if p.returncode != 0 or not os.access(binary, os.X_OK):
            raise HarnessError("building the previous release (%s) failed: see %s" % (commit[:12], log.name))
    except BaseException:
        shutil.rmtree(top, ignore_errors=True)
        raise
    return binary
