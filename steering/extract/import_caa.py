"""`python -m steering import-caa PATH`: bring a checkout of the CAA paper's repository into this project.

The paper's repository (Rimsky et al. 2023, arXiv 2312.06681) keeps, per behavior folder <b>:

    datasets/generate/<b>/generate_dataset.json          A/B pairs the vectors are made from
    datasets/test/<b>/test_dataset_ab.json               held-out A/B questions
    datasets/test/<b>/test_dataset_open_ended.json       held-out open-ended questions
    vectors/<b>/vec_layer_<L>_<model>.pt                 one 1-D tensor per layer and model
    normalized_vectors/<b>/vec_layer_<L>_<model>.pt      the same, scaled to one norm per layer

This command writes them in this project's layout:

    <datasets_dir>/<behavior>/generate.json, test_ab.json, test_open_ended.json
    <vectors_dir>/<behavior>/<model-slug>.safetensors               (from vectors/)
    <vectors_dir>/<behavior>/<model-slug>.normalized.safetensors    (from normalized_vectors/)

Behavior folder names become this project's names: lower case, other characters '-'
('corrigible-neutral-HHH' -> 'corrigible-neutral-hhh'), or what --rename says. Everything is read and
checked before anything is written (a bad file is a one-line error naming the file and item index, and
nothing is written); .pt files are read with torch.load(weights_only=True), so a file cannot run code.
Each file is written atomically; a destination that exists with other content is skipped and reported
unless --force (one with the same content is left alone and reported as unchanged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.config import model_slug
from steering.core.limits import Limits, check_behavior_name
from steering.errors import SteeringError
from steering.extract.caa_checkout import (
    DATASET_FILES,
    VECTOR_FOLDERS,
    behavior_slug,
    check_vector_files,
    inside,
    read_items,
    read_vector_group,
    vector_groups,
)
from steering.io.caa_pt import CAA_NAME
from steering.io.files import atomic_write
from steering.io.vector_files import load_safetensors, save_safetensors
from steering.io.vector_set import VectorSet


@dataclass
class Planned:
    """One file the import would write: where, what (bytes or a writer), and from which source file."""

    source: Path
    dest: Path
    what: str  # e.g. "generate.json (250 items)"
    content: bytes | None = None  # JSON files: the exact bytes to write
    write: Callable[[Path], Any] | None = None  # vector files: writes the file (atomically) at its argument
    compare: Callable[[Path], bool] | None = None  # vector files: does an existing file hold the same vectors?


@dataclass
class ImportReport:
    """What import-caa found, wrote, left alone and skipped, as lines for the terminal."""

    found: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # 'what: why'
    conflicts: int = 0  # files not written because they exist with other content (no --force)
    dry_run: bool = False  # `written` holds what would be written

    def lines(self) -> list[str]:
        """The report as terminal lines: one per found / written / unchanged / skipped item, then a count line
        (naming the files kept because they exist with other content, and --force).
        """
        out = [f"found: {item}" for item in self.found]
        out += [f"wrote: {item}" for item in self.written]
        out += [f"unchanged: {item}" for item in self.unchanged]
        out += [f"skipped: {item}" for item in self.skipped]
        written = f"{len(self.written)} {'would be written' if self.dry_run else 'written'}"
        out.append(
            f"{written}, {len(self.unchanged)} unchanged, {len(self.skipped)} skipped"
            + (
                f" ({self.conflicts} because they exist with other content: pass --force to replace them)"
                if self.conflicts
                else ""
            )
        )
        return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _json_bytes(items: list[Any]) -> bytes:
    return (json.dumps(items, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def plan_import(
    source: Path,
    datasets_dest: Path,
    vectors_dest: Path,
    behaviors: Sequence[str] | None = None,
    rename: dict[str, str] | None = None,
    limits: Any = None,
    report: ImportReport | None = None,
) -> tuple[list[Planned], ImportReport]:
    """Read and check everything an import would write, writing nothing.

    Args:
        source: the root of a checkout of the paper's repository (see the module docstring).
        datasets_dest, vectors_dest: this project's datasets and vectors folders to write into.
        behaviors: only these paper folder names (default: every behavior found).
        rename: paper folder name -> this project's behavior name (default: behavior_slug).
        limits: steering.core.limits.Limits for the dataset checks (default Limits()).
        report: a report to add to (default: a new one).

    Returns:
        (the files to write, the report of what was found and skipped so far).

    Raises:
        SteeringError: `source` is not a folder or holds none of the paper's files; a behavior asked for
            is not there; a bad dataset (file and item index) or vector file (file and reason).
    """

    limits = limits or Limits()
    report = report or ImportReport()
    rename = dict(rename or {})
    if not source.is_dir():
        raise SteeringError(f"{source}: not a folder (expected a checkout of the CAA paper's repository)")
    root = source.resolve()
    names: set[str] = set()
    for top, *_ in DATASET_FILES:
        names |= {p.name for p in (source / "datasets" / top).glob("*") if p.is_dir()}
    for folder, _ in VECTOR_FOLDERS:
        names |= {p.name for p in (source / folder).glob("*") if p.is_dir()}
    if not names:
        raise SteeringError(
            f"{source}: none of the paper's folders (datasets/generate/<behavior>/, "
            "datasets/test/<behavior>/, vectors/<behavior>/) found"
        )
    if behaviors:
        missing = [b for b in behaviors if b not in names]
        if missing:
            raise SteeringError(f"{source}: no behavior folder '{missing[0]}' (found: {', '.join(sorted(names))})")
        names = set(behaviors)
    unknown = sorted(set(rename) - names)
    if unknown:
        raise SteeringError(
            f"--rename {unknown[0]}=...: no behavior folder '{unknown[0]}' (found: {', '.join(sorted(names))})"
        )
    planned: list[Planned] = []
    targets: dict[str, str] = {}
    for name in sorted(names):
        target = check_behavior_name(rename[name]) if name in rename else behavior_slug(name)
        if target in targets:
            raise SteeringError(
                f"behavior folders '{targets[target]}' and '{name}' would both become '{target}'; use --rename"
            )
        targets[target] = name
        label = name if target == name else f"{name} (as {target})"
        for top, paper_file, own_file, kind in DATASET_FILES:
            path = source / "datasets" / top / name / paper_file
            if path.is_dir():
                report.skipped.append(f"{label}: {path.relative_to(source)}: is a directory, not a file")
                continue
            if not path.is_file():
                report.skipped.append(f"{label}: {path.relative_to(source)}: not there")
                continue
            inside(root, path, source)
            items = read_items(path, kind, limits)
            report.found.append(f"{label}: {path.relative_to(source)} ({_count(len(items), 'item')})")
            planned.append(
                Planned(path, datasets_dest / target / own_file, _count(len(items), "item"), content=_json_bytes(items))
            )
        for folder, suffix in VECTOR_FOLDERS:
            where = source / folder / name
            if not where.is_dir():
                continue
            groups = vector_groups(where)
            check_vector_files(root, where, groups, source)
            others = sorted(p.name for p in where.iterdir() if p.is_file() and not CAA_NAME.match(p.name))
            for other in others:
                report.skipped.append(f"{label}: {folder}/{name}/{other}: not a vec_layer_<L>_<model>.pt file")
            for model, files in sorted(groups.items()):
                planned.append(
                    _plan_vectors(
                        where, model, files, name, target, folder, suffix, vectors_dest, source, report, label
                    )
                )
    return planned, report


def _plan_vectors(
    where: Path,
    model: str,
    files: list[Path],
    name: str,
    target: str,
    folder: str,
    suffix: str,
    vectors_dest: Path,
    source: Path,
    report: ImportReport,
    label: str,
) -> Planned:
    """Read one model's per-layer files of a behavior; the safetensors file they become."""

    rel = where.relative_to(source)
    vset = read_vector_group(where, model, files, rel)
    slug = model_slug(model) if model else "model"
    dest = vectors_dest / target / f"{slug}{suffix}.safetensors"
    metadata = {
        "model": model or "unknown",
        "hidden_size": str(vset.hidden_size),
        "behavior": target,
        "method": "mean-diff",
        "read_mode": "letter",
        "normalized": "true" if suffix else "false",
        "format": "imported from the CAA paper's layout",
        "source": f"{rel}/vec_layer_<L>_{model}.pt",
        "imported": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = VectorSet(vset.vectors, metadata, str(dest))
    layers = vset.layers
    report.found.append(
        f"{label}: {rel}/ {_count(len(layers), 'layer')} ({layers[0]}..{layers[-1]}) for "
        f"{model or 'an unnamed model'}, hidden size {vset.hidden_size}"
    )

    def same(path: Path) -> bool:
        try:
            old = load_safetensors(path)
        except SteeringError:
            return False
        return old.layers == layers and all(old.vectors[layer].equal(vset.vectors[layer]) for layer in layers)

    return Planned(
        where,
        dest,
        f"{_count(len(layers), 'layer')} of {model or 'an unnamed model'}",
        write=lambda path: save_safetensors(out, path),
        compare=same,
    )


def run_import(
    planned: Sequence[Planned],
    report: ImportReport,
    force: bool = False,
    dry_run: bool = False,
    show: Callable[[Path], str] = str,
) -> ImportReport:
    """Write the planned files (atomically), leaving equal files alone and others unless `force`.

    Args:
        planned, report: from plan_import.
        force: replace destination files that exist with other content.
        dry_run: write nothing; the report says what would be written.
        show: how the report names a destination path.
    """

    report.dry_run = dry_run
    for item in planned:
        dest = item.dest
        if dest.exists():
            if dest.is_dir():
                report.skipped.append(f"{show(dest)}: is a folder")
                continue
            equal = (dest.read_bytes() == item.content) if item.content is not None else item.compare(dest)
            if equal:
                report.unchanged.append(f"{show(dest)} (same content)")
                continue
            if not force:
                report.skipped.append(f"{show(dest)}: exists with other content (pass --force to replace it)")
                report.conflicts += 1
                continue
        verb = "would write" if dry_run else ("replaced" if dest.exists() else "new")
        if not dry_run:
            if item.content is not None:
                data = item.content
                atomic_write(dest, lambda tmp, data=data: Path(tmp).write_bytes(data))
            else:
                item.write(dest)
        report.written.append(f"{show(dest)}: {item.what} [{verb}]")
    return report
