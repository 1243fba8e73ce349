"""The ``quantizer`` command: eval (synthetic and folder data), save, list, and bad input -> one line + exit 2."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

import pytest
import torch
from PIL import Image

from quantizer import zoo
from quantizer.cli import main
from quantizer.io import load_quantized
from quantizer.methods.base import METHODS

RES = "32"
SMALL = ["--resolution", RES, "--calib-batchsize", "2", "--calib-iter", "3", "--val-batchsize", "4", "--val-iter", "2"]


def _fake() -> ModuleType:
    """tests/quantizer/fake_method.py, loaded by path (tests/quantizer is not an importable package)."""
    name = "quantizer_tests_fake_method"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_method.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Register the fake method; record the calibration set each quantize() call gets."""
    mod = _fake()
    calls: list[dict[str, int]] = []

    class Recording(mod.FakeLinearMethod):
        def calibrate(self, model, calib, cfg, holdout=()):
            calls.append({"batches": sum(1 for _ in calib), "images": sum(int(b.shape[0]) for b in calib),
                          "holdout": len(holdout)})
            return super().calibrate(model, calib, cfg, holdout)

    monkeypatch.setitem(METHODS, mod.NAME, Recording)
    mod.calls = calls
    return mod


def make_folder(root: Path, per_class: int = 3) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40, 36), (60 * c + 20 * i, 100, 150 - 40 * c)).save(
                    folder / f"{i}.{'png' if i % 2 else 'JPEG'}")
    return root


def run(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(args: Sequence[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    code, out, err = run(args, capsys)
    assert code == 2, (out, err)
    assert err.startswith("quantizer: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    return err


# ---- eval ---------------------------------------------------------------------------------------------------------


def test_eval_float_only_on_synthetic_data_says_so(capsys) -> None:
    code, out, err = run(["eval", "deit_tiny", *SMALL], capsys)
    assert code == 0 and err == ""
    assert "synthetic" in out.lower() and "no accuracy" in out and "random weights" in out
    assert "top-1" not in out and "SQNR" not in out


def test_eval_quant_synthetic_reports_fidelity_and_uses_every_calibration_batch(tmp_path: Path, fake,
                                                                                 capsys) -> None:
    out_json = tmp_path / "res" / "eval.json"
    code, out, err = run(["eval", "deit_tiny", "--quant", "--method", fake.NAME, "--w-bits", "4", "--no-ptf",
                          *SMALL, "--json", str(out_json)], capsys)
    assert code == 0, err
    assert fake.calls == [{"batches": 3, "images": 6, "holdout": 0}]  # P9: all --calib-iter batches
    assert "fidelity of the quantized model to the float model" in out
    assert "top-1 agreement" in out and "cosine" in out and "SQNR" in out and "dB" in out
    record = json.loads(out_json.read_text())
    assert record["data"]["mode"] == "synthetic" and record["metrics"].startswith("fidelity")
    assert record["quant_config"]["method"] == fake.NAME and record["quant_config"]["w_bits"] == 4
    assert record["quant_config"]["ptf"] is False and record["quant_config"]["observer"] == "minmax"
    assert record["calibration"] == {"source": "synthetic", "images": 6, "batches": 3, "batch_size": 2,
                                     "seconds": record["calibration"]["seconds"]}
    fid = record["fidelity"]
    assert fid["images"] == 8 and 0 <= fid["top1_agreement"] <= 1 and -1 <= fid["cosine"] <= 1
    assert isinstance(fid["sqnr_db"], (float, str)) and record["float"] is None


@pytest.mark.parametrize("flags, ptf, lis, mixed", [
    ([], False, False, False),
    (["--ptf", "--lis"], True, True, False),
    (["--ptf", "--no-ptf", "--mixed"], False, False, True),
])
def test_boolean_flags_are_real_booleans(tmp_path: Path, fake, capsys, flags, ptf, lis, mixed) -> None:
    out_json = tmp_path / "eval.json"
    code, _, err = run(["eval", "deit_tiny", "--quant", "--method", fake.NAME, *flags, *SMALL, "--json",
                        str(out_json)], capsys)
    assert code == 0, err
    cfg = json.loads(out_json.read_text())["quant_config"]
    assert (cfg["ptf"], cfg["lis"], cfg["mixed"]) == (ptf, lis, mixed)
    # a hold-out (from a different stream than calibration) is drawn only for the search of --mixed (P14)
    assert fake.calls[-1]["holdout"] == (4 if mixed else 0)


def test_eval_with_data_reports_accuracy_of_both_models(tmp_path: Path, fake, capsys) -> None:
    root = make_folder(tmp_path / "imagenet")
    out_json = tmp_path / "eval.json"
    code, out, err = run(["eval", "deit_tiny", "--data", str(root), "--quant", "--method", fake.NAME,
                          "--resolution", RES, "--calib-batchsize", "2", "--calib-iter", "2",
                          "--val-batchsize", "4", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert fake.calls[0]["images"] == 4
    lines = out.splitlines()
    assert any(line.startswith("float") and "%" in line for line in lines)
    assert any(line.startswith("quantized") and "%" in line for line in lines)
    assert "synthetic" not in out.lower()
    record = json.loads(out_json.read_text())
    assert record["metrics"] == "accuracy" and record["data"]["mode"] == "imagefolder"
    assert record["data"]["preprocessing"]["name"] == "deit" and record["data"]["preprocessing"]["crop"] == 32
    assert record["images"] == 6 and record["float"]["images"] == 6 and record["quantized"]["images"] == 6
    assert 0 <= record["quantized"]["top1"] <= record["quantized"]["top5"] <= 1


def test_method_options_reach_the_quant_config(tmp_path: Path, fake, capsys) -> None:
    out_json = tmp_path / "eval.json"
    code, out, err = run(["eval", "deit_tiny", "--quant", "--method", fake.NAME, "--option", "recon_iters=3",
                          "--option", "alpha=0.35", "--option", "rule=log", "--option", "fast=true", *SMALL,
                          "--json", str(out_json)], capsys)
    assert code == 0, err
    options = json.loads(out_json.read_text())["quant_config"]["options"]
    assert options == {"recon_iters": 3, "alpha": 0.35, "rule": "log", "fast": True}
    assert "recon_iters=3" in out
    assert_usage_error(["eval", "deit_tiny", "--quant", "--option", "novalue"], capsys, "expected KEY=VALUE")


def test_data_free_calibration_with_real_evaluation(tmp_path: Path, fake, capsys) -> None:
    root = make_folder(tmp_path / "imagenet")
    out_json = tmp_path / "eval.json"
    code, out, err = run(["eval", "deit_tiny", "--data", str(root), "--quant", "--method", fake.NAME,
                          "--calib-data", "gaussian", *SMALL, "--json", str(out_json)], capsys)
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["calibration"]["source"] == "synthetic" and record["metrics"] == "accuracy"
    assert "calibrated on 6 synthetic images" in out


def test_eval_is_deterministic(tmp_path: Path, fake, capsys) -> None:
    records = []
    for i in range(2):
        out_json = tmp_path / f"{i}.json"
        assert run(["eval", "deit_tiny", "--quant", "--method", fake.NAME, *SMALL, "--json", str(out_json)],
                   capsys)[0] == 0
        rec = json.loads(out_json.read_text())
        rec.pop("seconds"), rec["calibration"].pop("seconds")
        records.append(rec)
    assert records[0] == records[1]


def test_eval_with_a_matching_checkpoint(tmp_path: Path, capsys) -> None:
    model, _ = zoo.build("deit_tiny", int(RES))
    ckpt = tmp_path / "deit_tiny.pth"
    torch.save(model.state_dict(), ckpt)
    code, out, err = run(["eval", "deit_tiny", "--checkpoint", str(ckpt), *SMALL], capsys)
    assert code == 0, err
    assert f"checkpoint {ckpt}" in out


# ---- save and list ------------------------------------------------------------------------------------------------


def test_save_writes_a_loadable_file(tmp_path: Path, fake, capsys) -> None:
    out = tmp_path / "models" / "q.pt"
    code, stdout, err = run(["save", "deit_tiny", "--method", fake.NAME, "--a-bits", "6", "--resolution", RES,
                             "--calib-batchsize", "2", "--calib-iter", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert str(out) in stdout and "quantized modules" in stdout
    model, info = load_quantized(out)
    assert info.model == "deit_tiny" and info.resolution == int(RES) and info.config.a_bits == 6
    assert info.config.method == fake.NAME and fake.calls[0]["batches"] == 2


def test_save_needs_method_and_out(capsys) -> None:
    assert_usage_error(["save", "deit_tiny", "--out", "x.pt"], capsys, "--method")
    assert_usage_error(["save", "deit_tiny", "--method", "fqvit"], capsys, "--out")


def test_list_shows_methods_and_models(fake, capsys) -> None:
    code, out, _ = run(["list"], capsys)
    assert code == 0
    assert "methods:" in out and fake.NAME in out and "models:" in out
    for name in ("deit_tiny", "swin_tiny", "efficientvit_b1", "vit_base"):
        assert name in out
    assert "efficientvit preprocessing" in out


def test_help_lists_commands_and_boolean_flags(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "eval" in out and "save" in out and "list" in out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "--ptf, --no-ptf" in out and "--quant-method" in out and "synthetic" in out


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    assert "usage: quantizer" in capsys.readouterr().err


# ---- bad input ----------------------------------------------------------------------------------------------------


def test_unknown_model_lists_the_known_ones(capsys) -> None:
    assert_usage_error(["eval", "resnet50"], capsys, "unknown model 'resnet50'", "deit_tiny")


def test_unknown_method(capsys) -> None:
    assert_usage_error(["eval", "deit_tiny", "--quant", "--method", "nosuch"], capsys,
                       "unknown quantization method 'nosuch'")


@pytest.mark.parametrize("flag, value", [("--w-bits", "1"), ("--w-bits", "9"), ("--a-bits", "1"),
                                         ("--a-bits", "9")])
def test_bits_outside_2_to_8(capsys, flag: str, value: str) -> None:
    assert_usage_error(["eval", "deit_tiny", "--quant", flag, value], capsys, f"{flag} must be an integer from 2 to 8",
                       f"got {value}")


@pytest.mark.parametrize("args, expected", [
    (["--quant-method", "mse"], "invalid choice: 'mse'"),
    (["--calib-iter", "0"], "expected a positive integer"),
    (["--w-bits", "eight"], "invalid int value"),
    (["--resolution", "40"], "multiple of 16"),
    (["--seed", "-1"], "non-negative"),
])
def test_bad_options(capsys, args: list[str], expected: str) -> None:
    assert_usage_error(["eval", "deit_tiny", "--quant", *args], capsys, expected)


def test_quant_options_without_quant_are_refused(capsys) -> None:
    assert_usage_error(["eval", "deit_tiny", "--ptf", "--w-bits", "4"], capsys, "--ptf/--no-ptf, --w-bits",
                       "only apply with --quant")


def test_options_that_would_be_ignored_are_refused(capsys) -> None:
    assert_usage_error(["eval", "deit_tiny", "--quant", "--holdout-iter", "2"], capsys, "only applies with --mixed")
    assert_usage_error(["eval", "deit_tiny", "--quant", "--calib-data", "train"], capsys, "needs --data DIR")
    assert_usage_error(["eval", "deit_tiny", "--calib-data", "gaussian"], capsys, "--calib-data only apply with --quant")


def test_method_that_does_not_support_the_family(fake, capsys) -> None:
    assert_usage_error(["eval", "efficientvit_b1", "--resolution", "32", "--quant", "--method", fake.NAME], capsys,
                       f"method '{fake.NAME}' does not support efficientvit_b1 (family efficientvit; it supports vit)")


@pytest.mark.parametrize("problem, expected", [
    ("no val", "missing val/"),
    ("empty class", "class folder val/dog has no images"),
    ("corrupt image", "broken.JPEG: cannot be read"),
])
def test_bad_data_folders(tmp_path: Path, capsys, problem: str, expected: str) -> None:
    root = make_folder(tmp_path / "imagenet")
    if problem == "no val":
        (root / "val").rename(root / "validation")
    elif problem == "empty class":
        for f in (root / "val" / "dog").iterdir():
            f.unlink()
    else:
        (root / "val" / "cat" / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert_usage_error(["eval", "deit_tiny", "--data", str(root), *SMALL], capsys, expected, str(root))


def test_mismatched_checkpoint_names_the_keys(tmp_path: Path, capsys) -> None:
    model, _ = zoo.build("deit_tiny", int(RES))
    state = model.state_dict()
    state["head.weight_renamed"] = state.pop("head.weight")
    ckpt = tmp_path / "bad.pth"
    torch.save(state, ckpt)
    assert_usage_error(["eval", "deit_tiny", "--checkpoint", str(ckpt), *SMALL], capsys, str(ckpt),
                       "missing keys: head.weight", "unexpected keys: head.weight_renamed")


def test_unwritable_json_fails_before_the_work(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import quantizer.cli

    def no_work(*args: object) -> None:
        raise AssertionError("the model was built before the --json check")

    monkeypatch.setattr(quantizer.cli, "_setup", no_work)
    (tmp_path / "file").write_text("")
    assert_usage_error(["eval", "deit_tiny", "--json", str(tmp_path / "file" / "out.json")], capsys, "--json")


def test_python_m_quantizer_one_line_error_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "quantizer", "eval", "nosuch_model", "--quant", "--w-bits", "4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("quantizer: error: unknown model 'nosuch_model'")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and proc.stdout == ""


# ---- the real FQ-ViT method, once it exists -----------------------------------------------------------------------

HAS_FQVIT = importlib.util.find_spec("quantizer.methods.fqvit") is not None
needs_fqvit = pytest.mark.skipif(not HAS_FQVIT, reason="quantizer/methods/fqvit.py is not written yet")


@needs_fqvit
def test_fqvit_minmax_end_to_end_small(tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "eval.json"
    code, out, err = run(["eval", "deit_tiny", "--quant", "--quant-method", "minmax", "--calib-batchsize", "4",
                          "--calib-iter", "2", "--val-batchsize", "4", "--val-iter", "2", "--json", str(out_json)],
                         capsys)
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["quant_config"]["method"] == "fqvit" and record["fidelity"]["images"] == 8
    assert "top-1 agreement" in out


@needs_fqvit
@pytest.mark.slow
def test_fqvit_minmax_end_to_end_defaults(capsys) -> None:
    code, out, err = run(["eval", "deit_tiny", "--quant", "--quant-method", "minmax"], capsys)
    assert code == 0, err
    assert "fidelity" in out and "SQNR" in out


def test_json_record_is_strict_json_even_for_infinite_sqnr() -> None:
    from quantizer.cli import _json_safe

    record = {"fidelity": {"sqnr_db": float("inf"), "cosine": 1.0}, "x": [float("nan"), -float("inf")]}
    text = json.dumps(_json_safe(record), allow_nan=False)
    assert json.loads(text) == {"fidelity": {"sqnr_db": "inf", "cosine": 1.0}, "x": ["nan", "-inf"]}


def test_p2vit_end_to_end_small_turns_ptf_and_lis_on(tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "eval.json"
    code, out, err = run(["eval", "deit_tiny", "--quant", "--method", "p2vit", "--w-bits", "4", *SMALL,
                          "--json", str(out_json)], capsys)
    assert code == 0, err
    cfg = json.loads(out_json.read_text())["quant_config"]
    assert (cfg["method"], cfg["w_bits"], cfg["ptf"], cfg["lis"]) == ("p2vit", 4, True, True)  # P2-ViT's scheme
    assert "top-1 agreement" in out


def test_p2vit_mixed_end_to_end_small(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p2.pt"
    search = ["--option", "mixed_coarse=6", "--option", "mixed_population=3", "--option", "mixed_iters=1",
              "--option", "mixed_children=2", "--option", "hessian_samples=2"]
    code, _, err = run(["save", "deit_tiny", "--method", "p2vit", "--w-bits", "4", "--mixed", "--no-lis", *SMALL[:6],
                        "--holdout-iter", "1", *search, "--out", str(out)], capsys)
    assert code == 0, err
    model, info = load_quantized(out)
    assert info.config.mixed and not info.config.lis
    bits = {m.weight_quantizer.bit_type.bits for m in model.modules() if hasattr(m, "weight_quantizer")}
    assert bits <= {4, 8} and 8 in bits  # the patch embedding stays at 8 bits


def test_p2vit_refuses_efficientvit(capsys) -> None:
    assert_usage_error(["eval", "efficientvit_b1", "--resolution", "32", "--quant", "--method", "p2vit"], capsys,
                       "method 'p2vit' does not support efficientvit_b1")
