"""Weights as the ecosystem expects: torch's downloader with a sha256 check, the Hugging Face hub
layout (offline, from a cache laid out as the hub lays it out), save_pretrained, and torch.hub."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import cwm
from cwm import hf, hub
from cwm.cli.main import main
from cwm.config import VARIANTS, CWMConfig
from cwm.errors import InputError, WeightsError
from cwm.predictor import CWMPredictor

REPO = Path(__file__).resolve().parents[1]
GOLDEN = "eccv2024_2frame_kbias1"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ registered releases: download
@pytest.fixture
def release(monkeypatch, tmp_path, fixtures_dir):
    """The registered 'eccv2024-2frame' pointed at a file:// copy of a golden official checkpoint
    (a tiny stand-in variant with its head counts), with an empty cache."""
    info = json.loads((fixtures_dir / "index.json").read_text())[GOLDEN]
    (ed, edepth, eh), (dd, ddepth, dh) = info["encoder"], info["decoder"]
    monkeypatch.setitem(VARIANTS, "test_golden", CWMConfig(
        img_size=(64, 64), patch_size=8, enc_dim=ed, enc_depth=edepth, enc_heads=eh,
        dec_dim=dd, dec_depth=ddepth, dec_heads=dh, k_bias=True))
    src = fixtures_dir / f"{GOLDEN}.pth"
    cache = tmp_path / "cache"
    monkeypatch.setenv("CWM_CACHE", str(cache))

    def register(sha256: str | None) -> hub.WeightsEntry:
        entry = hub.WeightsEntry("eccv2024-2frame", "test stand-in", "test_golden", src.as_uri(), sha256=sha256)
        monkeypatch.setitem(hub.WEIGHTS, entry.name, entry)
        return entry

    register.source, register.cache = src, cache
    return register


def test_download_checks_the_sha256_and_keeps_the_file(release):
    entry = release(_sha256(release.source))
    path = hub.download(entry.name, progress=False)
    assert path == release.cache / release.source.name
    assert path.read_bytes() == release.source.read_bytes()
    assert sorted(p.name for p in release.cache.iterdir()) == [release.source.name]  # no .partial left
    assert hub.is_cached(entry.name)


def test_a_wrong_sha256_is_one_line_and_keeps_nothing(release):
    entry = release("0" * 64)
    with pytest.raises(WeightsError) as e:
        hub.download(entry.name, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "0" * 64 in msg and _sha256(release.source) in msg
    assert not release.cache.exists() or list(release.cache.iterdir()) == []
    assert not hub.is_cached(entry.name)


def test_cli_download_wrong_hash_exits_2_with_one_line(release, capsys):
    release("f" * 64)
    code = main(["weights", "download", "eccv2024-2frame", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("cwm: error:") and "sha256" in err
    assert not release.cache.exists() or list(release.cache.iterdir()) == []


def test_cli_download_without_a_known_hash_prints_the_path(release, capsys):
    release(None)
    code = main(["weights", "download", "eccv2024-2frame", "-q"])
    out, _ = capsys.readouterr()
    assert code == 0 and Path(out.strip()).read_bytes() == release.source.read_bytes()


def test_a_failed_download_is_one_line(release, tmp_path, monkeypatch):
    entry = hub.WeightsEntry("eccv2024-2frame", "gone", "test_golden", (tmp_path / "gone.pth").as_uri())
    monkeypatch.setitem(hub.WEIGHTS, entry.name, entry)
    with pytest.raises(WeightsError, match=r"download of 'eccv2024-2frame' from file://.* failed") as e:
        hub.download(entry.name, progress=False)
    assert "\n" not in str(e.value)


def test_sha256_in_the_table_must_be_a_hex_digest():
    with pytest.raises(ValueError, match="64 lowercase hex"):
        hub.WeightsEntry("x", "x", url="file:///x.pth", sha256="ABC")


# ------------------------------------------------------------------ torch.hub
def test_hubconf_has_an_entry_point_for_every_registered_name():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cwm_hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # torch.hub.list's rule: the callables whose names do not start with "_"
    names = {n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")}
    assert names == {e.entry_point for e in hub.WEIGHTS.values()}
    missing = [d for d in module.dependencies if importlib.util.find_spec(d) is None]
    assert not missing


def test_torch_hub_default_is_a_predictor():
    predictor = torch.hub.load(str(REPO), "default", source="local", device="cpu", verbose=False)
    assert isinstance(predictor, CWMPredictor)
    assert _same(_state(predictor.model), _state(cwm.load("default", device="cpu").model))


def test_torch_hub_release_loads_from_the_cache_or_says_how(release, fixtures_dir):
    release(_sha256(release.source))
    with pytest.raises(WeightsError, match="cwm weights download eccv2024-2frame"):
        torch.hub.load(str(REPO), "eccv2024_2frame", source="local", device="cpu", verbose=False)
    predictor = torch.hub.load(str(REPO), "eccv2024_2frame", source="local", device="cpu",
                               download=True, verbose=False)
    io = torch.load(fixtures_dir / f"{GOLDEN}.io.pt", weights_only=True)
    with torch.no_grad():
        y = predictor.model(io["x"], io["mask"])
    assert (y - io["y"]).abs().max().item() < 1e-5
    # now cached: the entry point loads without downloading
    again = torch.hub.load(str(REPO), "eccv2024_2frame", source="local", device="cpu", verbose=False)
    assert _same(_state(again.model), _state(predictor.model))


# ------------------------------------------------------------------ save_pretrained
def test_save_pretrained_writes_the_hub_layout_and_never_overwrites(tmp_path, tiny_model):
    predictor = CWMPredictor(tiny_model, device="cpu")
    folder = predictor.save_pretrained(tmp_path / "mine", training={"step": 7}, repo_id="me/tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: cwm\n") and 'cwm.load("me/tiny")' in card and "| 7 |" in card
    assert json.loads((folder / "config.json").read_text())["training"] == {"step": 7}
    assert _same(_state(cwm.load(str(folder), device="cpu").model), _state(tiny_model))
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="file exists; pass overwrite=True"):
        predictor.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before
    predictor.save_pretrained(folder, overwrite=True)


# ------------------------------------------------------------------ the Hugging Face hub
def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hub_cache(cache: Path, repo_id: str, folder: Path, commit: str) -> Path:
    """Lay ``folder``'s files out as huggingface_hub caches a model repository: content-addressed
    blobs (sha256 for LFS files, the git blob sha1 for small ones), a snapshot of relative
    symlinks per commit, and refs/main naming the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        data = f.read_bytes()
        blob = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else _git_blob_sha1(data)
        (repo / "blobs" / blob).write_bytes(data)
        (snap / f.name).symlink_to(Path("..", "..", "blobs", blob))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo


@pytest.mark.skipif(os.name == "nt", reason="the hub's cache uses symlinks")
def test_load_a_hub_repository_offline_from_the_cache(tmp_path, tiny_model):
    predictor = CWMPredictor(tiny_model, device="cpu")
    exported = predictor.save_pretrained(tmp_path / "export")
    cache = tmp_path / "hf" / "hub"
    _hub_cache(cache, "cwm-test/tiny", exported, "0123456789abcdef0123456789abcdef01234567")
    torch.manual_seed(1)  # a different model in a local folder named like a hub id
    local = CWMPredictor(cwm.build_model(tiny_model.cfg), device="cpu")
    local.save_pretrained(tmp_path / "work" / "cwm-test" / "shadowed")
    _hub_cache(cache, "cwm-test/shadowed", exported, "89abcdef0123456789abcdef0123456789abcdef")
    torch.save({"hub": _state(tiny_model), "local": _state(local.model)}, tmp_path / "expected.pt")

    script = textwrap.dedent(f"""
        import sys, torch, cwm
        from huggingface_hub import scan_cache_dir
        from cwm.errors import WeightsError
        info = scan_cache_dir()  # the cache we laid out is one huggingface_hub recognises
        assert not info.warnings and {{r.repo_id for r in info.repos}} == {{"cwm-test/tiny", "cwm-test/shadowed"}}, info
        want = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        def same(model, sd):
            got = model.state_dict()
            return got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
        assert same(cwm.load("cwm-test/tiny", device="cpu").model, want["hub"])
        assert same(cwm.load("cwm-test/shadowed", device="cpu").model, want["local"])  # the folder wins
        for name, words in [("cwm-test/missing", "not in the Hugging Face cache"),
                            ("defualt", "did you mean 'default'?"),
                            ("-bad-/id", "does not exist")]:
            try:
                cwm.load(name, device="cpu")
            except WeightsError as e:
                assert words in str(e) and "\\n" not in str(e), (name, str(e))
            else:
                raise AssertionError(name)
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "work", env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr[-3000:]


def test_hub_ids_and_other_names():
    assert hf.is_hub_id("org/name") and hf.is_hub_id("Org-1/model.v2_b")
    for bad in ("name", "a/b/c", "-a/b", "a/b.", "a--b/c", "a/b..c", "org/name.git", "a/" + "b" * 97, "/abs"):
        assert not hf.is_hub_id(bad), bad


def test_missing_huggingface_hub_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(WeightsError, match=r'needs huggingface_hub; install it with: pip install "cwm\[hub\]"'):
        cwm.load("some-org/some-model", device="cpu")


def test_import_stays_free_of_torch_and_the_hub():
    code = ("import sys, cwm, cwm.hub, cwm.hf; "
            "print(sorted(m for m in ('torch', 'huggingface_hub') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "[]\n" and out.stderr == "", out.stderr
