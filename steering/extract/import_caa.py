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
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.config import Config
from steering.errors import SteeringError

# the paper's file -> this project's file, per behavior
DATASET_FILES = (
    ("generate", "generate_dataset.json", "generate.json", "ab"),
    ("test", "test_dataset_ab.json", "test_ab.json", "ab"),
    ("test", "test_dataset_open_ended.json", "test_open_ended.json", "open"),
)
# the paper's vector folders -> the suffix of this project's file name
VECTOR_FOLDERS = (("vectors", ""), ("normalized_vectors", ".normalized"))
_CAA_FILE = re.compile(r"^vec_layer_(\d+)(?:_(.+))?\.pt$")
MAX_LAYER = 1023  # a layer number above this is a damaged or hostile file name (no model is that deep)


def behavior_slug(folder_name: str) -> str:
    """This project's behavior name for a paper folder name: lower case, accents dropped ('Ü' -> 'u', by
    Unicode NFKD decomposition), runs of other characters '-'.

    Raises:
        SteeringError: nothing usable is left (e.g. a name of punctuation only), or letters or digits with no
            plain a-z / 0-9 form (e.g. 'ß', '名'): those are not guessed at, --rename names the folder.
    """
    import unicodedata

    from steering.core.limits import check_behavior_name

    plain = "".join(c for c in unicodedata.normalize("NFKD", folder_name) if not unicodedata.combining(c))
    foreign = sorted({c for c in plain if not c.isascii() and c.isalnum()})
    if foreign:
        raise SteeringError(
            f"behavior folder {folder_name!r}: {''.join(foreign)!r} has no plain a-z/0-9 form; "
            f"name it with --rename {folder_name}=NAME"
        )
    slug = re.sub(r"[^a-z0-9_-]+", "-", plain.lower()).strip("-")
    if not slug:
        raise SteeringError(f"behavior folder {folder_name!r}: no letters or digits to name it by; use --rename")
    return check_behavior_name(slug)


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


def _read_items(path: Path, kind: str, limits: Any) -> list[Any]:
    """The file's items after this project's checks (steering.core.datasets), as they will be written."""
    from steering.core.datasets import load_ab_dataset, load_open_ended

    if kind == "ab":
        load_ab_dataset(path, None, limits)  # one-line errors naming the file and the item index
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
        return [{key: item[key] for key in keys} for item in data]
    return [{"question": question} for question in load_open_ended(path, limits)]


def _inside(root: Path, path: Path, source: Path) -> None:
    """Refuse a path that leads out of the checkout (a symbolic link to elsewhere): nothing outside is read.

    Raises:
        SteeringError: naming the path (relative to the checkout) and where it leads.
    """
    if not path.resolve().is_relative_to(root):
        raise SteeringError(
            f"{path.relative_to(source)}: a link to outside the checkout "
            f"({path.resolve()}); not followed (copy the file in, or remove the link)"
        )


def _check_vector_files(root: Path, where: Path, groups: dict[str, list[Path]], source: Path) -> None:
    """Refuse a vector folder or file that leads out of the checkout, and a layer number over MAX_LAYER.

    Raises:
        SteeringError: naming the file (relative to the checkout).
    """
    _inside(root, where, source)
    for file in (f for files in groups.values() for f in files):
        _inside(root, file, source)
        match = _CAA_FILE.match(file.name)
        digits = match.group(1) if match else ""
        if len(digits) > len(str(MAX_LAYER)) or int(digits or 0) > MAX_LAYER:
            raise SteeringError(
                f"{file.relative_to(source)}: layer {digits[:12]}{'...' if len(digits) > 12 else ''}"
                f" is not a layer number (expected 0 to {MAX_LAYER}); rename or remove the file"
            )


def _vector_groups(folder: Path) -> dict[str, list[Path]]:
    """vec_layer_<L>_<model>.pt files of a folder by model name as written in the file names."""
    groups: dict[str, list[Path]] = {}
    for file in sorted(folder.glob("vec_layer_*.pt")):
        match = _CAA_FILE.match(file.name)
        if match:
            groups.setdefault(match.group(2) or "", []).append(file)
    return groups


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
    from steering.core.limits import Limits, check_behavior_name

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
            _inside(root, path, source)
            items = _read_items(path, kind, limits)
            report.found.append(f"{label}: {path.relative_to(source)} ({_count(len(items), 'item')})")
            planned.append(
                Planned(path, datasets_dest / target / own_file, _count(len(items), "item"), content=_json_bytes(items))
            )
        for folder, suffix in VECTOR_FOLDERS:
            where = source / folder / name
            if not where.is_dir():
                continue
            groups = _vector_groups(where)
            _check_vector_files(root, where, groups, source)
            others = sorted(p.name for p in where.iterdir() if p.is_file() and not _CAA_FILE.match(p.name))
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
    from steering.io.caa_pt import load_caa_layout
    from steering.io.vector_files import VectorSet, load_safetensors, save_safetensors
    from steering.models import model_slug

    rel = where.relative_to(source)
    if model:
        vset = load_caa_layout(where, model)  # this model's files only; weights_only; one-line errors
    else:
        vset = VectorSet({}, {}, str(rel))
        from steering.io.caa_pt import load_pt_vector  # unnamed vec_layer_<L>.pt files

        for file in files:
            vset.vectors[int(_CAA_FILE.match(file.name).group(1))] = load_pt_vector(file)
    for file in files:  # NaN, inf, absurd norms, shapes: named by file
        layer = int(_CAA_FILE.match(file.name).group(1))
        VectorSet({layer: vset.vectors[layer]})._check_contents(str(rel / file.name))
    vset._check_contents(f"{rel}/vec_layer_<L>_{model}.pt")  # one size for all layers
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
    from steering.io.files import atomic_write

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


# ---------------------------------------------------------------------------- command line
def register(sub: Any) -> None:
    """Add the `import-caa` sub-command to steering.cli's parser."""
    from steering.cli.common import add_threads_flag

    p = sub.add_parser(
        "import-caa",
        help="bring the CAA paper's datasets and vectors (a local checkout of its "
        "repository) into this project's layout",
    )
    p.add_argument("path", help="the root of a local checkout of the paper's repository")
    p.add_argument(
        "--dest", help="write into DEST/datasets and DEST/vectors (default: config.yaml's datasets_dir and vectors_dir)"
    )
    p.add_argument("--behaviors", nargs="+", help="only these behavior folders of the paper (default: all)")
    p.add_argument(
        "--rename",
        nargs="+",
        default=[],
        metavar="PAPER=OURS",
        help="name a paper folder differently here, e.g. corrigible-neutral-HHH=corrigible-neutral",
    )
    p.add_argument("--force", action="store_true", help="replace files that exist with other content")
    p.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    p.add_argument("--config")
    add_threads_flag(p)
    p.set_defaults(func=cmd_import_caa)


def _parse_rename(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old or not new:
            raise SteeringError(f"--rename {value!r}: expected PAPER_FOLDER=OUR_NAME")
        out[old] = new
    return out


def cmd_import_caa(args: Any, config: Config) -> int:
    """Run import-caa: print what was found, written, left alone and skipped (and why).

    Returns:
        0, or 1 when a file was not written because it exists with other content (no --force).
    """
    from steering.cli.common import check_destination, display_path

    rename = _parse_rename(args.rename)
    source = Path(args.path)
    if args.dest:
        datasets_dest, vectors_dest = Path(args.dest) / "datasets", Path(args.dest) / "vectors"
    else:
        datasets_dest, vectors_dest = config.datasets_dir, config.vectors_dir
    planned, report = plan_import(source, datasets_dest, vectors_dest, args.behaviors, rename, config.limits)
    if not args.dry_run:
        check_destination(datasets_dest, "datasets folder", folder=True)
        check_destination(vectors_dest, "vectors folder", folder=True)
    run_import(planned, report, force=args.force, dry_run=args.dry_run, show=lambda p: display_path(p))
    for line in report.lines():
        print(line)
    return 1 if report.conflicts else 0
