"""The gradient map as a user sees it: the CLI's picture (content, then rendered to PNG) and the static map."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

from gradtrace import gradmap
from gradtrace.analysis.lens import Lens
from gradtrace.engine import check_source

ROOT = Path(__file__).resolve().parents[2]
DETACH = ROOT / "fixtures" / "torch" / "bad_detach.py"
GPT = Path(__file__).parent / "data" / "gpt_cut.py"
LENS_TRAIN = ROOT / "tests" / "lsp" / "data" / "lens_train.py"
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
ENCODER = ["model.encoder.0.weight", "model.encoder.0.bias", "model.encoder.2.weight", "model.encoder.2.bias"]
DECODER = ["model.decoder.0.weight", "model.decoder.0.bias", "model.decoder.2.weight", "model.decoder.2.bias"]



def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradtrace", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240)


def _groups(root, cls: str) -> list:
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def _texts(g) -> str:
    return " ".join(t.text or "" for t in g.iter(f"{SVG}text"))


def _tooltips(g) -> str:
    return " ".join(a.get(f"{XLINK}title") or "" for a in g.iter(f"{SVG}a"))


def _png_pixels(path: Path):
    """Decode an 8-bit RGB/RGBA PNG (what rsvg-convert writes) into (width, height, rows of bytes, channels)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            ch = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * ch
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - ch] if x >= ch else 0
            b, c = prev[x], prev[x - ch] if x >= ch else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, ch


def _count(rows, ch, rgb, tol=8) -> int:
    n = 0
    for row in rows:
        for x in range(0, len(row), ch):
            if all(abs(row[x + k] - rgb[k]) <= tol for k in range(3)) and (ch == 3 or row[x + 3] > 200):
                n += 1
    return n


def test_cli_graph_svg_shows_dead_encoder_and_the_detach_cut(tmp_path):
    out = tmp_path / "map.svg"
    proc = _cli("probe", str(DETACH), "--graph", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # findings: the encoder gets no gradient
    assert f"gradient map (probe, svg) written to {out}" in proc.stderr
    root = ET.parse(out).getroot()
    dead = _groups(root, "gt-none")
    assert sorted(_tooltips(g).split(":")[0] for g in dead) == sorted(ENCODER)
    assert all("None" in _texts(g) for g in dead)
    live = _groups(root, "gt-ok")
    assert sorted(_tooltips(g).split(":")[0] for g in live) == sorted(DECODER)
    assert all("‖g‖" in _texts(g) for g in live)
    [cut] = _groups(root, "gt-cut")
    assert _texts(cut) == "✂ detach · line 15"
    encoder = [g for g in _groups(root, "gt-module") if _texts(g) == "encoder — no gradient"]
    assert encoder and "gt-dead" in encoder[0].get("class")
    assert [_texts(g) for g in _groups(root, "gt-loss")] == ["loss · line 25"]
    # the cut sits on the edge it severs: encoder.2 -> cut -> decoder.0 (dashed, ending in a bar)
    edges = {g.find(f"{SVG}title").text.replace("&#45;", "-") for g in _groups(root, "gt-edge")}
    by_id = {g.get("id"): _tooltips(g) for g in _groups(root, "gt-param")}
    assert any(e.endswith("->gt-cut-0") and by_id[e.split("->")[0]].startswith("model.encoder.2.") for e in edges)
    assert any(e.startswith("gt-cut-0->") and by_id[e.split("->")[1]].startswith("model.decoder.0.") for e in edges)
    assert len(_groups(root, "gt-severed")) == 1


def test_cli_picture_renders_to_png_with_red_dead_nodes_and_cut(tmp_path):
    rsvg = shutil.which("rsvg-convert")
    assert rsvg, "rsvg-convert missing: bash scripts/setup-gradmap.sh"
    svg = tmp_path / "map.svg"
    assert _cli("probe", str(DETACH), "--graph", str(svg), cwd=tmp_path).returncode == 1
    png = tmp_path / "map.png"
    subprocess.run([rsvg, "-b", "white", str(svg), "-o", str(png)], check=True, timeout=60)
    width, height, rows, ch = _png_pixels(png)
    assert 300 < width < 2000 and 400 < height < 3000
    assert _count(rows, ch, (0xC6, 0x28, 0x28)) > 1500  # the red cut box (and dead borders)
    assert _count(rows, ch, (0xFB, 0xD5, 0xD5)) > 3000  # the pink fill of the four dead parameters
    assert _count(rows, ch, (0xD8, 0xF0, 0xDC)) > 3000  # the green fill of the decoder's parameters
    keep = os.environ.get("GRADTRACE_ARTIFACTS")
    if keep:
        shutil.copy(png, Path(keep) / "gradient-map-cli.png")


def test_cli_graph_html_is_self_contained_and_clickable(tmp_path):
    out = tmp_path / "map.html"
    assert _cli("probe", str(DETACH), "--graph", str(out), "--format", "json", cwd=tmp_path).returncode == 1
    page = out.read_text()
    assert "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']https?:""", page)  # nothing fetched from the network
    index = json.loads(re.search(r'<script type="application/json" id="gt-index">(.*?)</script>', page, re.S)[1])
    dead = {v["name"]: v for v in index.values() if v["kind"] == "param" and v["status"] == "none"}
    assert sorted(dead) == sorted(ENCODER)
    assert all(v["cut"] == "detach (line 15)" and v["line"] == 10 for v in dead.values())
    [cut] = [v for v in index.values() if v["kind"] == "cut"]
    assert (cut["name"], cut["line"], len(cut["params"])) == ("detach", 15, 4)
    assert '<span class="gt-kind gt-probe">probe result</span>' in page


def test_static_map_without_a_probe_is_labelled_and_names_the_cut():
    text = DETACH.read_text()
    gm = gradmap.build(path=str(DETACH), text=text)
    assert gm.source == "static"
    assert "static analysis only" in gm.title
    decoder, encoder = gm.params.values()
    assert (decoder.name, decoder.status, decoder.line) == ("model.decoder", "reached", 11)
    assert (encoder.name, encoder.status, encoder.line) == ("model.encoder", "unknown", 10)
    [cut] = gm.cuts.values()
    assert (cut.op, cut.line) == (".detach()", 15)
    assert gm.loss["line"] == 26
    assert {(e.src, e.dst, e.live) for e in gm.edges} == {(encoder.id, cut.id, False), (cut.id, "loss", False),
                                                         (decoder.id, "loss", True)}
    assert gm.summary == "static analysis: the loss reaches 1 of 2 modules; 1 loses its gradient at 1 cut"
    assert len(check_source(text, str(DETACH)).findings) == 1


def test_the_static_map_and_the_lens_agree():
    """What the map draws is what the code lens above each loss says: reached modules live, the others cut
    where the lens says."""
    text = LENS_TRAIN.read_text()
    [sink] = Lens(check_source(text, str(LENS_TRAIN)).context).sinks()
    gm = gradmap.build(path=str(LENS_TRAIN), text=text)
    drawn = {p.name: p for p in gm.params.values()}
    assert sorted(drawn) == sorted(sink.reached + [name for name, _ in sink.unreached])
    assert [n for n, p in drawn.items() if p.status == "reached"] == sink.reached == ["model.head"]
    for name, cut in sink.unreached:
        drawn_cut = gm.cuts[drawn[name].cut]
        assert (drawn_cut.op, drawn_cut.line) == (cut.op, cut.line) == (".detach()", 14)
    assert gm.loss["line"] == sink.line
    index = gm.index()
    assert index[drawn["model.encoder"].id]["cut"] == ".detach() (line 14)"


def test_without_data_flow_every_training_module_points_at_the_loss():
    result = {"status": "ok", "path": "/x/train.py", "mode": "script", "parameters": [
        {"name": "w", "grad": "ok", "norm": 1.0, "defined_at": {"path": "/x/train.py", "line": 3}},
        {"name": "net.dense.kernel", "grad": "none", "defined_at": {"path": "/x/train.py", "line": 5},
         "cut": {"path": "/x/train.py", "line": 9, "op": "stop_gradient", "reason": "tf.stop_gradient"}},
        {"name": "net.head.kernel", "grad": "ok", "in_optimizer": False},
    ], "ops": [], "flow": []}
    gm = gradmap.from_probe(result)
    names = {p.name: p for p in gm.params.values()}
    assert names["net.head.kernel"].status == "no-optimizer"
    cut = next(iter(gm.cuts.values()))
    pairs = {(e.src, e.dst, e.severed) for e in gm.edges}
    assert ("net.dense", cut.id, False) in pairs and (cut.id, "loss", True) in pairs
    assert (names["w"].id, "loss", False) in pairs and ("net.head", "loss", False) in pairs
    assert "gradient, but in no optimizer" in gm.summary


def test_twelve_layer_transformer_folds_blocks_and_shows_the_dead_half(tmp_path):
    out = tmp_path / "gpt.svg"
    proc = _cli("probe", str(GPT), "--graph", str(out), cwd=tmp_path)
    assert "74 no gradient (None)" in proc.stderr, proc.stderr
    root = ET.parse(out).getroot()
    folded = {_texts(g).split()[0]: g.get("class") for g in _groups(root, "gt-folded")}
    assert sorted(folded, key=int) == [str(i) for i in range(12)]
    assert all("gt-none" in folded[str(i)] for i in range(6))
    assert all("gt-ok" in folded[str(i)] for i in range(6, 12))
    [cut] = _groups(root, "gt-cut")
    assert _texts(cut) == "✂ detach · line 35"
    # the residual stream is drawn as a chain: one edge into each block
    assert len(_groups(root, "gt-edge")) < 30


def test_without_graphviz_the_cli_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from gradtrace.gradmap import cli, dot

    monkeypatch.setattr(dot.shutil, "which", lambda name: None)
    result = {"status": "ok", "path": str(DETACH), "parameters": [{"name": "w", "grad": "none"}]}
    assert cli.write_graph(result, str(tmp_path / "map.svg")) is False
    err = capsys.readouterr().err
    assert "could not write the gradient map" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "map.svg").exists()
    assert cli.write_graph(result, str(tmp_path / "map.png")) is False
    assert "write .svg, .html or .dot" in capsys.readouterr().err
