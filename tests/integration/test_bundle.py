"""Bundle format: write → load round trip and refusal of broken bundles (real FAISS, real ONNX)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.schema import N_RANKER_FEATURES
from models.bundle import (
    Bundle,
    BundleContents,
    BundleError,
    discard_bundle,
    finalize_bundle,
    load_bundle,
    stage_bundle,
    write_bundle,
)
from models.linear_ranker import linear_ranker
from models.runtime import load_sessions
from tests.support import cosine_neighbors


def copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def rewrite_manifest(bundle: Path, **changes: object) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_loaded_bundle_searches_and_scores(tiny_bundle_path: Path) -> None:
    bundle = load_bundle(tiny_bundle_path)
    assert len(bundle.catalog) == 400 and bundle.dim == 8
    query = np.asarray(bundle.item_vectors[17], dtype=np.float32)
    _, ids = bundle.index.search(query[None, :], 5)
    brute = np.argsort(-(np.asarray(bundle.item_vectors) @ query))[:5]
    assert ids[0].tolist() == brute.tolist()
    sessions = load_sessions(bundle)
    assert set(sessions) == {"linear-v1", "linear-v2"}
    out = sessions["linear-v1"].run(None, {"features": np.ones((3, N_RANKER_FEATURES), np.float32)})[0]
    assert out.shape == (3, 1)
    assert bundle.catalog.artist_ids[0] == bundle.catalog.artist_ids[3] != bundle.catalog.artist_ids[4]


def test_a_modified_file_fails_its_checksum(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    with (broken / "popularity.npy").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"popularity\.npy: checksum mismatch"):
        load_bundle(broken)


def test_a_missing_file_is_named(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    (broken / "index.faiss").unlink()
    with pytest.raises(BundleError, match=r"index\.faiss: listed in the manifest but missing"):
        load_bundle(broken)


def test_a_bundle_for_another_feature_schema_is_refused(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    rewrite_manifest(broken, schema_version=999)
    with pytest.raises(BundleError, match="feature schema version 999"):
        load_bundle(broken)


def test_not_a_bundle_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path)


def test_a_model_with_the_wrong_input_width_is_refused(tiny_bundle_path: Path, tmp_path: Path) -> None:
    import onnx

    broken = copy(tiny_bundle_path, tmp_path)
    model = onnx.load_from_string(linear_ranker(np.ones(N_RANKER_FEATURES, np.float32)))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = N_RANKER_FEATURES + 1
    model.graph.initializer[0].dims[0] = N_RANKER_FEATURES + 1
    model.graph.initializer[0].float_data.append(0.0)
    (broken / "models" / "linear-v2.onnx").write_bytes(model.SerializeToString())
    bundle = load_bundle(broken, verify_checksums=False)
    with pytest.raises(BundleError, match=f"expected float\\[N, {N_RANKER_FEATURES}\\]"):
        load_sessions(bundle)


def rehash(bundle: Path, rel: str) -> None:
    """Make the manifest's checksum match an edited file (so the structural check is what fails)."""
    import hashlib

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["checksums"][rel] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_malformed_manifest_structure_is_a_bundle_error_naming_the_problem(
    tiny_bundle_path: Path, tmp_path: Path
) -> None:
    cases = {
        "no_file": (lambda m: m["models"][0].pop("file"), r"models entry .* lacks 'file'"),
        "checksums_list": (lambda m: m.update(checksums=[]), "checksums must be a dict"),
        "models_strings": (lambda m: m.update(models=["x"]), "models entry 'x'"),
        "dim_text": (lambda m: m.update(embedding_dim="8"), "embedding_dim must be a int"),
    }
    for name, (edit, message) in cases.items():
        broken = tmp_path / name
        shutil.copytree(tiny_bundle_path, broken)
        manifest = json.loads((broken / "manifest.json").read_text())
        edit(manifest)
        (broken / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(BundleError, match=message):
            load_bundle(broken)


def test_a_short_items_row_names_the_line(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    lines = (broken / "items.tsv").read_text().splitlines()
    lines[5] = "i00004\ta0001"  # two columns
    (broken / "items.tsv").write_text("\n".join(lines) + "\n")
    rehash(broken, "items.tsv")
    with pytest.raises(BundleError, match=r"items\.tsv:6: expected 3 tab-separated columns, got 2"):
        load_bundle(broken)


def test_a_truncated_array_names_its_file(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    data = (broken / "item_stats.npy").read_bytes()
    (broken / "item_stats.npy").write_bytes(data[: len(data) // 2])
    rehash(broken, "item_stats.npy")
    with pytest.raises(BundleError, match=r"item_stats\.npy: cannot read"):
        load_bundle(broken)


def test_neighbour_table_and_known_items_round_trip_memory_mapped(tiny_bundle_path: Path) -> None:
    bundle = load_bundle(tiny_bundle_path)
    assert bundle.item_neighbors.dtype == np.int32 and bundle.item_neighbors.shape == (400, 10)
    assert bundle.item_neighbor_weights.dtype == np.float32
    assert bundle.item_neighbor_weights.shape == bundle.item_neighbors.shape
    assert not bundle.item_neighbors.flags.writeable  # memory-mapped read-only
    expected, _ = cosine_neighbors(np.asarray(bundle.item_vectors), k=10)
    np.testing.assert_array_equal(bundle.item_neighbors, expected)
    assert bundle.manifest["item_neighbors_k"] == 10
    users = bundle.load_users()
    assert users.known_indptr is not None and users.known_items is not None
    assert users.known_indptr.shape == (51,) and users.known_items.size == 250 == bundle.manifest["known_items"]
    assert not users.known_items.flags.writeable
    row = users.known(3)
    assert row.size == 5 and np.all(np.diff(row) > 0)
    assert {"item_neighbors.npy", "user_features/known_items.npy"} <= set(bundle.manifest["checksums"])


def _resave(bundle: Path, rel: str, array: np.ndarray) -> None:
    """Replace one array and fix its checksum, so only the content validation can refuse it."""
    np.save(bundle / rel, array)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["checksums"][rel] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_neighbour_table_with_out_of_range_items_is_refused(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    neighbors = np.load(broken / "item_neighbors.npy")
    neighbors[3, 0] = 400
    _resave(broken, "item_neighbors.npy", neighbors)
    with pytest.raises(BundleError, match=r"item_neighbors holds indices outside -1\.\.399"):
        load_bundle(broken)


def test_neighbour_weights_of_another_shape_are_refused(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    _resave(broken, "item_neighbor_weights.npy", np.zeros((400, 3), np.float32))
    with pytest.raises(BundleError, match=r"item_neighbor_weights is float32\(400, 3\)"):
        load_bundle(broken)


def test_unsorted_or_out_of_range_known_items_are_refused(tiny_bundle_path: Path, tmp_path: Path) -> None:
    broken = copy(tiny_bundle_path, tmp_path)
    known = np.load(broken / "user_features/known_items.npy")
    known[[0, 1]] = known[[1, 0]]
    _resave(broken, "user_features/known_items.npy", known)
    with pytest.raises(BundleError, match="not strictly ascending within each user"):
        load_bundle(broken).load_users()
    known[[0, 1]] = known[[1, 0]]
    known[-1] = 400
    _resave(broken, "user_features/known_items.npy", known)
    with pytest.raises(BundleError, match=r"outside 0\.\.399"):
        load_bundle(broken).load_users()


def _contents(source: Bundle, version: str, models: dict[str, bytes], **extra: Any) -> BundleContents:
    """``source``'s catalogue, arrays and users as new contents with ``models`` (the first the default)."""
    return BundleContents(
        version=version,
        item_ids=list(source.catalog.item_ids),
        artist_ids=[str(a) for a in source.catalog.artist_ids],
        item_names=list(source.catalog.names),
        item_vectors=np.asarray(source.item_vectors),
        item_stats=np.asarray(source.item_stats),
        popularity=np.asarray(source.popularity),
        models=models,
        default_model=next(iter(models)),
        users=source.load_users(),
        **extra,
    )


def test_staged_bundle_loads_then_publishes_with_its_evaluation(tmp_path: Path, tiny_bundle_path: Path) -> None:
    source = load_bundle(tiny_bundle_path)
    contents = _contents(
        source,
        "staged",
        {"linear-v1": linear_ranker({"retrieval_score": 1.0})},
        item_neighbors=np.asarray(source.item_neighbors),
        item_neighbor_weights=np.asarray(source.item_neighbor_weights),
    )
    out = tmp_path / "bundles" / "staged"
    staged = stage_bundle(contents, out)
    assert not out.exists() and staged.path.parent == out.parent and staged.path.name.startswith(".")
    assert load_bundle(staged.path).manifest["evaluation"] == {}
    assert finalize_bundle(staged, {"home": {"ranker": {"ndcg@10": 0.5}}}) == out
    assert not staged.path.exists()
    published = load_bundle(out)  # the manifest is not checksummed: still valid
    assert published.manifest["evaluation"] == {"home": {"ranker": {"ndcg@10": 0.5}}}
    again = stage_bundle(replace(contents, version="other"), tmp_path / "bundles" / "other")
    discard_bundle(again)
    assert not again.path.exists() and not (tmp_path / "bundles" / "other").exists()


def test_negative_table_and_light_model_round_trip_and_bad_ones_are_refused(
    tmp_path: Path, tiny_bundle_path: Path
) -> None:
    source = load_bundle(tiny_bundle_path)
    n = len(source.catalog)
    negatives = np.full((n, 2), -1, dtype=np.int32)
    negatives[:, 0] = (np.arange(n) + 1) % n
    negative_weights = np.where(negatives >= 0, -0.5, 0).astype(np.float32)
    models = {"full": linear_ranker({"retrieval_score": 1.0}), "light": linear_ranker({"item_popularity_log": 1.0})}
    contents = _contents(
        source,
        "cascade",
        models,
        light_model="light",
        item_negative_neighbors=negatives,
        item_negative_weights=negative_weights,
    )
    bundle = load_bundle(write_bundle(contents, tmp_path / "cascade"))
    assert bundle.light_model == "light" and bundle.manifest["item_negative_neighbors_k"] == 2
    np.testing.assert_array_equal(bundle.item_negative_neighbors, negatives)
    np.testing.assert_array_equal(bundle.item_negative_weights, negative_weights)
    assert source.light_model is None and source.item_negative_neighbors.shape == (n, 0)

    _resave(bundle.path, "item_negative_weights.npy", -negative_weights)
    with pytest.raises(BundleError, match=r"item_negative_weights must be finite and <= 0"):
        load_bundle(bundle.path)
    _resave(bundle.path, "item_negative_weights.npy", negative_weights)
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    manifest["light_model"] = "tiny"
    (bundle.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"light_model 'tiny' is not one of \['full', 'light'\]"):
        load_bundle(bundle.path)
    with pytest.raises(BundleError, match="light_model"):
        write_bundle(replace(contents, version="bad", light_model="tiny"), tmp_path / "bad")
