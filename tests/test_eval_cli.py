"""`fwrd-eval` end to end on a small synthetic cohort (mask TIFFs and ASAP XML), and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from fwrd.cli.evaluate import command
from fwrd.config import FWRDConfig
from fwrd.runtime.backends.base import Backend
from fwrd.slide.annotations import Annotations
from fwrd.slide.synthetic import write_asap_xml, write_mask

SIZE = (4096, 4096)  # level 0; level 5 is 128 x 128


def ellipse(cx: float, cy: float, a: float, b: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[cx + a * np.cos(t), cy + b * np.sin(t)]


ANNOTATIONS = {
    # a lesion with an exclusion hole, and an ITC far from it
    "tumor_001": Annotations(tumor=[ellipse(1500, 1500, 900, 700), ellipse(3600, 3600, 50, 40)],
                             exclusions=[ellipse(1500, 1500, 350, 250)]),
    # two lesions 150 px (36 um) apart that merge into one, and a separate lesion nobody finds
    "tumor_002": Annotations(tumor=[ellipse(1200, 1000, 700, 300), ellipse(1200, 1750, 700, 300),
                                    ellipse(3000, 3200, 600, 600)]),
}
DETECTIONS = {
    "tumor_001": "0.9,1500,1500\n0.8,3600,3600\n0.3,200,3900\n",  # in the hole; on the ITC; background
    "tumor_002": "0.7,1200,1000\n0.6,1200,1750\n0.4,3900,200\n",  # both halves of the merged lesion; FP
    "normal_001": "0.5,100,100\n0.2,2000,2000\n",
}
# 4 slides (normal_002 has no CSV), 3 lesions; TP entries 0.9, 0 (ITC), 0.7, 0 (missed);
# FPs 0.3, 0.4, 0.5, 0.2 -> from 1/4 FP per slide on, sensitivity is 2/3 at every operating point
EXPECTED_SENS = [2 / 3] * 6
SCORES = "slide,score,status,error\ntumor_001,0.9,ok,\ntumor_002,0.4,ok,\nnormal_001,0.5,ok,\nnormal_002,0.1,ok,\n"
REFERENCE = "tumor_001,Tumor\ntumor_002,Tumor\nnormal_001,Normal\nnormal_002,Normal\n"


def blank_slide(path: Path, size: tuple[int, int]) -> None:
    tile = np.full((256, 256, 3), 255, np.uint8)
    count = (size[0] // 256) * (size[1] // 256)
    tifffile.imwrite(path, (tile for _ in range(count)), shape=(size[1], size[0], 3), dtype=np.uint8,
                     tile=(256, 256), photometric="rgb", compression="jpeg")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_cohort")
    for sub in ("masks", "annotations", "slides", "detections"):
        (root / sub).mkdir()
    for name, ann in ANNOTATIONS.items():
        write_asap_xml(root / "annotations" / f"{name}.xml", ann)
        write_mask(root / "masks" / f"{name}_Mask.tif", ann, [(SIZE[0] >> k, SIZE[1] >> k) for k in range(6)],
                   0.243, 256, False)
        blank_slide(root / "slides" / f"{name}.tif", SIZE)
    for name, text in DETECTIONS.items():
        (root / "detections" / f"{name}.csv").write_text(text)
    (root / "reference.csv").write_text(REFERENCE)
    write_run_folder(root / "run", SIZE)
    return root


def write_run_folder(run: Path, size: tuple[int, int], run_key: str = "k1") -> Path:
    """A fwrd-run output folder for SCORES and DETECTIONS: complete slide folders (every output file,
    summary.json with the slide's size) and the slides.csv fwrd-run builds from them."""
    from fwrd.atomic import write_json
    from fwrd.runtime.outputs.slides_table import update_slides_table
    from fwrd.runtime.outputs.summary import OUTPUT_FILES

    for line in SCORES.splitlines()[1:]:
        name, score = line.split(",")[:2]
        folder = run / name
        folder.mkdir(parents=True)
        for output in OUTPUT_FILES:
            (folder / output).write_bytes(b"")
        (folder / "detections.csv").write_text(DETECTIONS.get(name, ""))
        write_json(folder / "summary.json", {"slide": name, "score": float(score), "run_key": run_key,
                                             "slide_dimensions": list(size), "model": {"path": "rd.onnx"}})
    update_slides_table(run)
    return run


def invoke(*args: str):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def fails_cleanly(result, *words: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_froc_from_mask_tiffs(cohort, tmp_path):
    result = invoke("froc", "--detections", cohort / "detections", "--masks", cohort / "masks",
                    "--slides", cohort / "reference.csv", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "froc.json").read_text())
    assert data["slides"] == 4 and data["tumor_slides"] == 2 and data["lesions"] == 3 and data["itcs"] == 1
    assert data["sensitivities"] == pytest.approx(EXPECTED_SENS) and data["froc"] == pytest.approx(2 / 3)
    assert data["false_positives"] == 4 and data["without_detections_file"] == ["normal_002"]
    per_slide = {s["slide"]: s for s in data["per_slide"]}
    assert per_slide["tumor_001"]["itc_hits_ignored"] == 1 and per_slide["tumor_002"]["detected_lesions"] == 1
    assert "normal_002" in result.output and "0.6667" in result.output
    assert Image.open(tmp_path / "froc.png").size == (720, 540)


def test_froc_from_xml_equals_froc_from_masks(cohort, tmp_path):
    a, b = tmp_path / "tiff", tmp_path / "xml"
    common = ["froc", "--detections", cohort / "detections", "--slides", cohort / "reference.csv"]
    assert invoke(*common, "--masks", cohort / "masks", "--out", a).exit_code == 0
    result = invoke(*common, "--masks", cohort / "annotations", "--slide-dir", cohort / "slides", "--out", b)
    assert result.exit_code == 0, result.output
    ja, jb = (json.loads((p / "froc.json").read_text()) for p in (a, b))
    for key in ("froc", "sensitivities", "curve", "per_slide", "lesions", "itcs"):
        assert ja[key] == jb[key]


def test_froc_without_reference_counts_only_the_csvs(cohort, tmp_path):
    result = invoke("froc", "--detections", cohort / "detections", "--masks", cohort / "masks", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "froc.json").read_text())
    assert data["slides"] == 3 and data["without_detections_file"] == []
    # the same 4 FPs over 3 slides: FPs/slide (reversed) 0, 0, 0, 1/3, 2/3, 1, 4/3 with sensitivity
    # 0, 1/3, 2/3, 2/3, ...: every operating point still reads 2/3
    assert data["curve"]["fps_per_slide"][0] == pytest.approx(4 / 3)
    assert data["sensitivities"] == pytest.approx(EXPECTED_SENS)


def test_slides_auc(cohort, tmp_path):
    result = invoke("slides", "--scores", cohort / "run" / "slides.csv", "--reference", cohort / "reference.csv",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "slides.json").read_text())
    # tumor 0.9, 0.4 vs normal 0.5, 0.1: 3 of 4 pairs ordered
    assert data["auc"] == pytest.approx(0.75) and "AUC 0.7500" in result.output
    assert (tmp_path / "slides_roc.png").is_file()


def test_run_dir_does_everything(cohort, tmp_path):
    result = invoke(cohort / "run", "--reference", cohort / "reference.csv", "--masks", cohort / "masks",
                    "--exclude", "normal_002", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    froc = json.loads((tmp_path / "froc.json").read_text())
    slides = json.loads((tmp_path / "slides.json").read_text())
    assert froc["slides"] == 3 and froc["excluded"] == ["normal_002"]
    # tumor 0.9, 0.4 vs normal 0.5 once normal_002 is out: 1 of 2 pairs ordered
    assert slides["auc"] == pytest.approx(0.5) and slides["excluded"] == ["normal_002"]
    assert {p.name for p in tmp_path.iterdir()} == {"froc.json", "froc.png", "slides.json", "slides_roc.png"}


def test_run_dir_defaults_its_output_inside(cohort, tmp_path):
    import shutil

    run = shutil.copytree(cohort / "run", tmp_path / "run")
    result = invoke("run", run, "--reference", cohort / "reference.csv")
    assert result.exit_code == 0, result.output
    assert (run / "eval" / "slides.json").is_file() and "FROC skipped" in result.output


# --- bad input ------------------------------------------------------------------------------------

def copy_detections(cohort: Path, tmp_path: Path, **changes: str) -> Path:
    folder = tmp_path / "dets"
    folder.mkdir()
    for name, text in {**DETECTIONS, **changes}.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def test_header_line_in_detections(cohort, tmp_path):
    dets = copy_detections(cohort, tmp_path, tumor_001="Confidence,X,Y\n0.9,1500,1500\n")
    result = invoke("froc", "--detections", dets, "--masks", cohort / "masks", "--out", tmp_path / "o")
    fails_cleanly(result, "tumor_001.csv:1", "header")
    assert not (tmp_path / "o" / "froc.json").exists()


def test_malformed_detection_row(cohort, tmp_path):
    dets = copy_detections(cohort, tmp_path, normal_001="0.5,100,100\n0.2;2000;2000\n")
    fails_cleanly(invoke("froc", "--detections", dets, "--masks", cohort / "masks"), "normal_001.csv:2", "malformed")


def test_slide_missing_from_reference(cohort, tmp_path):
    dets = copy_detections(cohort, tmp_path, tumor_009="0.5,1,1\n")
    result = invoke("froc", "--detections", dets, "--masks", cohort / "masks", "--slides", cohort / "reference.csv")
    fails_cleanly(result, "tumor_009", "not in the reference")
    scores = tmp_path / "scores.csv"
    scores.write_text(SCORES + "tumor_009,0.3,ok,\n")
    fails_cleanly(invoke("slides", "--scores", scores, "--reference", cohort / "reference.csv"),
                  "tumor_009", "not in the reference")


def test_mask_of_the_wrong_size(cohort, tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    blank_slide(slides / "tumor_001.tif", (2048, 2048))
    result = invoke("froc", "--detections", cohort / "detections", "--masks", cohort / "masks",
                    "--slide-dir", slides)
    fails_cleanly(result, "4096x4096", "2048x2048", "wrong mask")


def test_detection_outside_the_mask(cohort, tmp_path):
    dets = copy_detections(cohort, tmp_path, tumor_002="0.5,5000,10\n")
    fails_cleanly(invoke("froc", "--detections", dets, "--masks", cohort / "masks"), "tumor_002", "outside")


def test_tumor_in_reference_without_mask(cohort, tmp_path):
    fails_cleanly(invoke("froc", "--detections", cohort / "detections", "--masks", tmp_path,
                         "--slides", cohort / "reference.csv"), "tumor_001", "no mask")


def test_xml_without_slide_size(cohort):
    fails_cleanly(invoke("froc", "--detections", cohort / "detections", "--masks", cohort / "annotations"),
                  "--slide-dir")


def test_missing_inputs(cohort, tmp_path):
    fails_cleanly(invoke("froc", "--detections", tmp_path / "nope", "--masks", cohort / "masks"), "not found")
    fails_cleanly(invoke(tmp_path, "--reference", cohort / "reference.csv"), "slides.csv", "fwrd-run output")
    fails_cleanly(invoke("slides", "--scores", cohort / "run" / "slides.csv", "--reference", tmp_path / "r.csv"),
                  "not found")
    fails_cleanly(invoke("froc", "--detections", cohort / "detections"), "--masks")


def test_failed_slide_in_the_run(cohort, tmp_path):
    scores = tmp_path / "slides.csv"
    scores.write_text(SCORES.replace("normal_002,0.1,ok,", "normal_002,,failed,corrupt JPEG"))
    result = invoke("slides", "--scores", scores, "--reference", cohort / "reference.csv")
    fails_cleanly(result, "normal_002 (failed: corrupt JPEG)", "--exclude")


# --- patches --------------------------------------------------------------------------------------

class DarknessBackend(Backend):
    """Stand-in backend: score = mean darkness of the tile (tumor patches are darker)."""

    name = "fake"

    def __init__(self, tile: int = 32, threshold: float = 0.5) -> None:
        super().__init__(FWRDConfig(tile_size=tile, threshold=threshold), {}, "fp32")
        self.closed = False

    def infer(self, tiles):
        dark = 1.0 - tiles.astype(np.float32).mean(axis=(1, 2, 3)) / 255.0
        return dark, np.zeros((len(tiles), tiles.shape[1] // 4, tiles.shape[2] // 4), np.float32)

    def close(self):
        self.closed = True


@pytest.fixture
def patch_dir(tmp_path) -> Path:
    root = tmp_path / "patches"
    # normal darkness 0.1, 0.2, 0.6 (one bright-looking mistake); tumor 0.55, 0.7, 0.9
    for label, values in (("normal", (0.1, 0.2, 0.6)), ("tumor", (0.55, 0.7, 0.9))):
        (root / label).mkdir(parents=True)
        for i, dark in enumerate(values):
            gray = round(255 * (1 - dark))
            Image.new("RGB", (32, 32), (gray, gray, gray)).save(root / label / f"p{i}.png")
    return root


def test_patches_with_a_stand_in_backend(monkeypatch, patch_dir, tmp_path):
    import fwrd.runtime.backends as backends

    opened = []

    def fake_open_backend(model, backend="auto", batch_size=16, threads=None):
        opened.append((Path(model).name, backend, batch_size))
        opened.append(DarknessBackend())
        return opened[-1]

    monkeypatch.setattr(backends, "open_backend", fake_open_backend)
    model = tmp_path / "rd.onnx"
    model.write_bytes(b"stand-in")
    result = invoke("patches", patch_dir, "--model", model, "--batch-size", "4", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert opened[0] == ("rd.onnx", "auto", 4) and opened[1].closed
    data = json.loads((tmp_path / "o" / "patches.json").read_text())
    # at 0.5: normal 0.6 is called tumor -> 5/6; best cut between 0.6 and 0.7 -> 5/6 (first maximum);
    # AUC: 8 of 9 (tumor, normal) pairs ordered
    assert data["accuracy"] == pytest.approx(5 / 6) and data["best_accuracy"] == pytest.approx(5 / 6)
    assert 0.6 < data["best_threshold"] < 0.7 and data["auc"] == pytest.approx(8 / 9)
    assert data["backend"] == "fake" and "accuracy 0.8333" in result.output


def test_patches_with_the_onnx_stand_in(patch_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from onnx_standin import build_standin

    model = build_standin(tmp_path / "rd.onnx", FWRDConfig(tile_size=32, threshold=0.5))
    result = invoke("patches", patch_dir, "--model", model, "--backend", "onnxruntime", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "o" / "patches.json").read_text())
    assert data["accuracy"] == pytest.approx(5 / 6) and data["auc"] == pytest.approx(8 / 9)


def test_patches_bad_input(patch_dir, tmp_path):
    model = tmp_path / "rd.onnx"
    fails_cleanly(invoke("patches", patch_dir, "--model", model), "model not found")
    (tmp_path / "only_normal" / "normal").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "only_normal" / "normal" / "a.png")
    model.write_bytes(b"x")
    fails_cleanly(invoke("patches", tmp_path / "only_normal", "--model", model), "tumor", "no patch images")


def test_patch_of_the_wrong_size(monkeypatch, patch_dir, tmp_path):
    import fwrd.runtime.backends as backends

    monkeypatch.setattr(backends, "open_backend", lambda *a, **k: DarknessBackend(tile=64))
    model = tmp_path / "rd.onnx"
    model.write_bytes(b"x")
    fails_cleanly(invoke("patches", patch_dir, "--model", model), "32x32", "64x64")


def test_mask_without_csv_and_no_reference_is_reported(cohort, tmp_path):
    dets = tmp_path / "dets"
    dets.mkdir()
    (dets / "tumor_001.csv").write_text(DETECTIONS["tumor_001"])
    result = invoke("froc", "--detections", dets, "--masks", cohort / "masks", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "o" / "froc.json").read_text())
    assert data["slides"] == 1 and data["masks_not_evaluated"] == ["tumor_002"]
    assert "1 mask(s) have no detections file" in result.output


def test_eval_is_a_subcommand_of_fwrd_and_stays_torch_free(cohort, tmp_path):
    import subprocess
    import sys

    from fwrd.cli import main

    assert CliRunner().invoke(main, ["eval", "--help"]).exit_code == 0
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "from fwrd.cli.evaluate import main\n"
        f"main(['froc', '--detections', {str(cohort / 'detections')!r}, '--masks', {str(cohort / 'masks')!r},"
        f" '--out', {str(tmp_path)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "froc.json").is_file()


# --- a run folder must tell the truth (issue 11.3-5, 14.7) -------------------------------------------

def test_run_dir_refuses_a_table_that_disagrees_with_the_folder(cohort, tmp_path):
    import shutil

    args = ("--reference", cohort / "reference.csv", "--masks", cohort / "masks", "--out", tmp_path / "o")
    stale = shutil.copytree(cohort / "run", tmp_path / "stale")
    (stale / "slides.csv").write_text(SCORES.replace("tumor_002,0.4", "tumor_002,0.7"))  # an older run's table
    fails_cleanly(invoke(stale, *args), "tumor_002", "0.7", "0.4", "--resume")
    shard = shutil.copytree(cohort / "run", tmp_path / "shard")
    (shard / "slides.csv").write_text("\n".join(SCORES.splitlines()[:3]) + "\n")  # one shard's rows only
    fails_cleanly(invoke(shard, *args), "does not list slide normal_001")
    assert not (tmp_path / "o").exists()


def test_run_dir_refuses_slides_of_two_models(cohort, tmp_path):
    import json as _json
    import shutil

    run = shutil.copytree(cohort / "run", tmp_path / "run")
    summary = _json.loads((run / "tumor_002" / "summary.json").read_text())
    (run / "tumor_002" / "summary.json").write_text(_json.dumps({**summary, "run_key": "k2"}))
    fails_cleanly(invoke(run, "--reference", cohort / "reference.csv"), "different models or settings")


def test_run_dir_reads_only_complete_slide_folders(cohort, tmp_path):
    import shutil

    run = shutil.copytree(cohort / "run", tmp_path / "run")
    # an interrupted slide and a half-written staging folder: their detections must not count
    for folder in (run / "normal_003", run / ".tumor_001.partial"):
        folder.mkdir()
        (folder / "detections.csv").write_text("0.99,100,100\n0.98,200,200\n")
    for name in ("froc", "run"):
        args = ("froc", "--detections", run) if name == "froc" else (run, "--reference", cohort / "reference.csv")
        result = invoke(*args, "--masks", cohort / "masks", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        froc = json.loads((tmp_path / name / "froc.json").read_text())
        assert froc["false_positives"] == 4 and "normal_003" not in result.output


def test_masks_are_checked_against_the_sizes_the_run_recorded(cohort, tmp_path):
    # issue 11.5: without --slide-dir a mask of twice the slide's size was accepted and FROC dropped
    run = write_run_folder(tmp_path / "run", (2048, 2048))
    result = invoke(run, "--reference", cohort / "reference.csv", "--masks", cohort / "masks", "--out", tmp_path / "o")
    fails_cleanly(result, "4096x4096", "2048x2048", "wrong mask")
    assert "AUC" not in result.output and not (tmp_path / "o").exists()  # issue 14.7: checked before any result
    slides = tmp_path / "slides"
    slides.mkdir()
    blank_slide(slides / "tumor_001.tif", SIZE)  # the slide folder disagrees with what the run recorded
    result = invoke("froc", "--detections", run, "--masks", cohort / "masks", "--slide-dir", slides)
    fails_cleanly(result, "tumor_001", "scored at 2048x2048", "replaced")


def test_run_dir_rasterises_xml_at_the_recorded_size_and_names_its_files(cohort, tmp_path):
    out = tmp_path / "o"
    result = invoke(cohort / "run", "--reference", cohort / "reference.csv", "--masks", cohort / "annotations",
                    "--exclude", "normal_002", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "froc.json").read_text())["lesions"] == 3
    wrote = result.output.strip().splitlines()[-1]
    assert wrote == "wrote " + ", ".join(str(out / n) for n in ("slides.json", "slides_roc.png", "froc.json", "froc.png"))


def test_organisers_flag_keeps_their_threshold_rule(cohort, tmp_path):
    perfect = tmp_path / "perfect"  # both lesions of tumor_002 found, no false positive, no ITC
    perfect.mkdir()
    (perfect / "tumor_002.csv").write_text("0.7,1200,1000\n0.65,3000,3200\n")
    (perfect / "normal_001.csv").write_text("")
    common = ("froc", "--detections", perfect, "--masks", cohort / "masks")
    ours = invoke(*common, "--out", tmp_path / "a")
    theirs = invoke(*common, "--organisers-froc", "--out", tmp_path / "b")
    assert ours.exit_code == 0 and theirs.exit_code == 0, ours.output + theirs.output
    a, b = (json.loads((tmp_path / d / "froc.json").read_text()) for d in "ab")
    assert a["froc"] == 1.0 and b["froc"] == 0.5  # the organisers drop the lowest-scored lesion
    assert b["lowest_threshold_rule"].startswith("organisers")
