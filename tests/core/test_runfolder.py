"""The run folder: an exclusive lock held by one process (checked with real processes), a torn metrics
line and stale temporaries after a kill, and what resuming does to a finished run's results."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest

from vidd.core.errors import UserError
from vidd.core.runfolder import RunFolder, RunLockedError

HOLD = """
import sys, time
from vidd.core.runfolder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_lock(path) -> subprocess.Popen:
    """Another process holding the folder's lock (until it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_gets_an_error_naming_the_holder(tmp_path):
    folder = RunFolder(tmp_path / "run")
    proc = hold_lock(folder.path)
    try:
        with pytest.raises(RunLockedError, match=f"in use by another vidd process \\(pid {proc.pid}\\)"):
            with folder.lock():
                pass
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_killed_process_is_taken_over_and_reported(tmp_path, caplog):
    folder = RunFolder(tmp_path / "run")
    proc = hold_lock(folder.path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert folder.lock_file.read_text().strip() == str(proc.pid)  # the pid file outlives its process
    with caplog.at_level(logging.WARNING), folder.lock():
        assert folder.lock_file.read_text().strip() == str(os.getpid())
    assert f"pid {proc.pid} left behind (a stale lock" in caplog.text
    assert folder.lock_file.read_text() == ""  # a released lock names no holder
    with folder.lock():  # and is taken again without a note
        pass


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
    folder = RunFolder(tmp_path)
    folder.metrics_file.write_text('{"iteration": 1}\n{"iteration": 2}\n{"iterat')
    with caplog.at_level(logging.WARNING):
        assert folder.read_metrics() == [{"iteration": 1}, {"iteration": 2}]
    assert "cut off while it was written" in caplog.text
    folder.metrics_file.write_text('{"iteration": 1}\nnot json\n{"iteration": 3}\n')
    with pytest.raises(UserError, match="line 2 is not JSON"):
        folder.read_metrics()


def test_reopening_marks_the_run_in_progress_and_sets_its_end_aside(tmp_path, caplog):
    folder = RunFolder(tmp_path / "run")
    with folder.lock():
        folder.create({"iterations": 2})
    assert folder.in_progress()
    folder.last_checkpoint.write_bytes(b"state")
    (folder.student_checkpoint).mkdir()
    folder.write_final_eval({"n": 2})
    folder.samples_file("final", ".fasta").write_text(">a\nA\n")
    folder.mark_finished()
    assert folder.model_checkpoint() == (folder.student_checkpoint, True)
    (folder.checkpoints_dir / ".last.pt.abc.tmp").write_bytes(b"half")
    (folder.checkpoints_dir / ".student.xyz.tmp").mkdir()
    with caplog.at_level(logging.WARNING), folder.lock():
        folder.reopen({"iterations": 5}, {"iterations": [2, 5]}, iteration=2)
    assert folder.in_progress() and folder.model_checkpoint() == (folder.last_checkpoint, False)
    assert sorted(os.listdir(folder.checkpoints_dir)) == ["last.pt"]
    assert not folder.final_eval_file.exists() and not folder.samples_file("final", ".fasta").exists()
    assert "removed the final results of its earlier end" in caplog.text and "2 temporary file(s)" in caplog.text
    assert folder.read_history()[0]["iteration"] == 2 and folder.read_history()[0]["changes"] == {"iterations": [2, 5]}
    assert folder.read_config() == {"iterations": 5}


def test_output_folder_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder"):
        RunFolder(tmp_path / "file").check_writable()
    with pytest.raises(UserError, match="cannot be made, .* is a file"):
        RunFolder(tmp_path / "file" / "run").check_writable()
    RunFolder(tmp_path / "new" / "run").check_writable()  # made when the run starts
    assert not (tmp_path / "new").exists()

