"""The guarded reader refuses what would hang or exhaust the process: FIFOs, devices, huge files."""

import os
import threading

import pytest
from gradtrace.engine import read_source
from gradtrace.guarded_files import UnreadableFile, read_bytes, read_text


def test_regular_file_is_read(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("\ufeffimport torch\n", encoding="utf-8")
    assert read_text(str(path)) == "import torch\n"


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.py"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            read_bytes(str(fifo))
        except UnreadableFile as exc:
            outcome["reason"] = exc.reason

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "FIFO" in outcome["reason"]


def test_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "z.py"
    link.symlink_to("/dev/zero")
    with pytest.raises(UnreadableFile, match="character device"):
        read_bytes(str(link))
    text, finding = read_source(str(link))
    assert text is None and finding.code == "GT001" and "character device" in finding.message


def test_size_limit(tmp_path):
    path = tmp_path / "big.py"
    path.write_bytes(b"#" * 4096)
    with pytest.raises(UnreadableFile, match="limit"):
        read_bytes(str(path), limit=1024)


def test_directory_is_refused(tmp_path):
    with pytest.raises(UnreadableFile, match="directory"):
        read_bytes(str(tmp_path))
