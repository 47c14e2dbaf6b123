"""Upstream judges our two readings of ``olm.skipRange``: each must agree with blang/semver/v4.

OLM reads a bundle's skipRange with ``semver.ParseRange`` of github.com/blang/semver/v4
(operator-lifecycle-manager pkg/controller/registry/resolver/cache/operators.go
NewOperatorFromBundle; a range that does not parse is no range) and asks it about the installed
CSV's version (predicates.go SkipRangeIncludesPredicate; the version as
operator-framework/api pkg/lib/version OperatorVersion reads it, ``semver.ParseTolerant``).
The collection (``olm_state.in_skip_range``) and the twin (``twin.controllers.olm.in_range``)
each have their own Python reading, written from the same notes; a tiny Go program of ours
(tests/differential/skiprange) asks the library itself, and every pair of a corpus must agree.

The program is built with the local Go toolchain into the user cache, keyed by the hash of its
sources (never into git). Without Go the test skips, unless CI is set: then it fails.
"""

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

from ansible_collections.confidential.gpu.plugins.module_utils import olm_state
from tests.conftest import skip_or_fail
from twin.controllers import olm as twin_olm
from twin.paths import cache_dir

SOURCE = Path(__file__).resolve().parent.parent / "differential" / "skiprange"
FILES = ("go.mod", "go.sum", "main.go")


def _source_hash():
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + (SOURCE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _judge_binary():
    """The built judge, building it first (one builder at a time, behind a file lock)."""
    target = cache_dir() / "differential" / "skiprange" / _source_hash() / "skiprange"
    if os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if not go:
        reason = ("the Go toolchain is absent: it builds the blang/semver judge in "
                  f"{SOURCE.relative_to(SOURCE.parents[2])} (install Go >= 1.22)")
        skip_or_fail(reason, "the differential test")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.access(target, os.X_OK):
            # As twin/build.py builds the kube binaries: the module proxy from the environment, no cgo.
            env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath -buildvcs=false")
            tmp = target.with_name(f"skiprange.{os.getpid()}.tmp")
            proc = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=SOURCE, env=env,
                                  capture_output=True, text=True, timeout=600, check=False)
            assert proc.returncode == 0, f"go build of the skiprange judge failed:\n{proc.stderr[-4000:]}"
            os.replace(tmp, target)
    return target


def blang(pairs):
    """blang/semver's answer for each ``(version, range)``: True/False, or the parse error text."""
    lines = "".join(json.dumps({"version": v, "range": r}) + "\n" for v, r in pairs)
    proc = subprocess.run([str(_judge_binary())], input=lines, capture_output=True, text=True, timeout=120, check=True)
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(answers) == len(pairs), proc.stderr
    return [a["in"] if "in" in a else a["error"] for a in answers]


def _twin_stamps():
    """The versions the twin's catalogs serve and the skipRanges it stamps on them."""
    versions, ranges = set(), set()
    for data in twin_olm.PACKAGES.values():
        versions.update(data["versions"])
        ranges.update((data.get("skip_range") or {}).values())
    return versions, ranges


VERSIONS = [
    "4.21.1", "4.21.10", "4.21.0", "4.20.9", "4.9.0", "4.8.99", "1.9.0", "1.8.9", "26.7.0", "26.6.99", "25.10.1",
    "1.0.0-rc.1", "1.0.0", "4.21.0-202511121510", "4.21.1-202512011200", "4.21.0-0", "4.21", "4", "v4.21.1",
    "4.21.1+build.7", "5.0.0", "4.0.0", "4.0.1", "v26.3.1", " 4.21.1 ", "4.021.1", "4.21.x", "", "latest",
    "4.21-rc.1", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta",
]
RANGES = [
    ">=4.9.0 <4.21.1", ">=1.9.0 <26.7.0", "<4.21.1 || >=5.0.0", ">=4.21.0-0 <4.21.9", ">4.0.0", "=4.21.1", "!=4.21.1",
    "4.21.1", "==4.21.1", "!4.21.1", "<=4.21.1", ">= 4.9.0 < 4.21.1", "  >=4.9.0   <4.21.1  ", ">=4.9.0 <4.21",
    ">=v4.9.0 <4.21.1", ">=4.9.0 <4.21.1 ||", "|| <4.21.1", ">=4.9.0||<4.0.0", ">=1.0.0-rc.1 <1.0.0",
    ">1.0.0-alpha <1.0.0-beta", ">=4.21.0+build <=4.21.0", "~4.21.0", "^4.21.0", ">=4.9.0,<4.21.1", "", " ",
    ">=4.09.0", "4.21.x", ">=4.9.x <4.21.x", "<=4.21.x", ">4.x", "!=4.21.x", "4.x || >=26.0.0", ">=4.9.0 <4.21.1 !4.20.9",
    # blang's quirks: a word of one byte is dropped, any word with an 'x' is a wildcard, an unknown
    # operator before a wildcard leaves the bare version, 'x' in a prerelease.
    " 4 >=4.9.0", "> 4.x.x", "!4.x", "~4.21.x", "=4.x", "<=4.x", ">=1.0.0-x", "<=1.0.0-x", ">4.21.x.x", ">=4.9.0 4",
    "||", ">=4.9.0 || <4.0.0 || =26.7.0", "<4.21.1+x",
]


def test_both_readings_agree_with_blang_semver_on_every_pair():
    twin_versions, twin_ranges = _twin_stamps()
    assert twin_ranges, "the twin stamps no skipRange any more: the corpus lost its own cases"
    versions = sorted(set(VERSIONS) | twin_versions)
    ranges = sorted(set(RANGES) | twin_ranges)
    pairs = list(itertools.product(versions, ranges))
    judged = blang(pairs)
    wrong = []
    for (version, expression), answer in zip(pairs, judged):
        # OLM: a skipRange that does not parse includes nothing; a version that does not parse is
        # no CSV at all (OperatorVersion refuses it), so it is in no range either.
        expected = answer if isinstance(answer, bool) else False
        for name, reading in (("olm_state.in_skip_range", olm_state.in_skip_range), ("twin in_range", twin_olm.in_range)):
            got = reading(version, expression)
            if got is not expected:
                wrong.append(f"{name}({version!r}, {expression!r}) = {got!r}, blang: {answer!r}")
    assert not wrong, f"{len(wrong)} of {2 * len(pairs)} readings disagree with blang/semver:\n" + "\n".join(wrong)


def test_the_corpus_reaches_both_answers_and_both_parse_errors():
    """A corpus blang answers one way only would prove nothing."""
    judged = blang(list(itertools.product(VERSIONS, RANGES)))
    assert True in judged and False in judged
    assert any(isinstance(a, str) and a.startswith("range:") for a in judged)
    assert any(isinstance(a, str) and a.startswith("version:") for a in judged)
