"""``egnet``: the project's one command-line program. Each subcommand parses its arguments here and
calls the library; errors at this boundary are printed as one line naming the problem, exit status 2."""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch

from egnet_core.config import DATASETS
from egnet_core.data.imageio import read_rgb, write_rgb
from egnet_core.data.labels import colorize
from egnet_core.data.synthetic import WRITERS
from egnet_core.deploy.export import MIN_OPSET, OPSET
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.int8_recipe import FLOAT_PRECISIONS
from egnet_core.deploy.int8_selection import Int8Guard
from egnet_core.deploy.options import AUTO_PRECISION, PRECISIONS, InferenceOptions, resolve_threads
from egnet_core.deploy.quantize import CALIBRATION_FRAMES
from egnet_core.extras import INSTALL, MissingExtra
from egnet_core.reports.visualize import exposure_picture
from egnet_core.study_commands import add_study_commands


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x512, got {text!r}") from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return width, height


def add_inference_arguments(parser: argparse.ArgumentParser, *, precision: str) -> None:
    """Where and how a checkpoint runs: the options every command that predicts shares. ``precision``: this
    command's default, auto where speed matters, fp32 where results must be the same on every machine."""
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--precision", default=precision, choices=(AUTO_PRECISION, *PRECISIONS),
                        help="auto (the fastest precision whose labels and exposure match fp32's on generated "
                             "frames, timed at start-up), fp32, bf16 (CPUs with AVX-512 BF16 or AMX, CUDA) or fp16 "
                             f"(CUDA) (default: {precision})")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for inference, at most the available CPUs (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay a CUDA graph per input size (CUDA)")


def ensure_writable_dir(path: Path, what: str, *, folder: Path | None = None) -> None:
    """Refuse an output place that cannot be written before any work starts, not after it: ``folder`` (by
    default ``path`` itself) is created and a temporary file is written there. Errors name ``what`` (the
    option) and ``path`` (its value)."""
    folder = path if folder is None else folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        blocked = existing is not None and not existing.is_dir()
        reason = f"{str(existing)!r} is a file, not a folder" if blocked else error.strerror or str(error)
        raise OSError(f"{what} {str(path)!r} cannot be written: {reason}; choose another place") from None


# The CLI's names of InferenceOptions fields, for the options' messages.
OPTION_NAMES = {"device": "--device", "precision": "--precision", "threads": "--threads",
                "input_size": "--input-size", "compile": "--compile", "cuda_graphs": "--cuda-graphs",
                "scales": "--scales", "flip": "--flip"}


def inference_options(args: argparse.Namespace, **options) -> InferenceOptions:
    """The options of ``add_inference_arguments`` (and ``options``, a command's own) as InferenceOptions."""
    return InferenceOptions(device=args.device, precision=args.precision,
                            threads=0 if args.threads is None else args.threads,
                            compile=args.compile, cuda_graphs=args.cuda_graphs, names=OPTION_NAMES, **options)


def build_segmenter(args: argparse.Namespace, **options) -> Segmenter:
    return Segmenter.from_checkpoint(args.checkpoint, inference_options(args, **options))


def _predict(args: argparse.Namespace) -> int:
    ensure_writable_dir(args.out, "--out")
    kinds = PREDICTION_FILES + (ATTENTION_FILES if args.attention else ())
    outputs = prediction_outputs(args.images, args.out, kinds)
    if not args.overwrite:
        refuse_existing([path for files in outputs.values() for path in files.values()], "--out")
    segmenter = build_segmenter(args, input_size=args.input_size)
    if args.attention:
        try:
            segmenter.require_attention()
        except ValueError as error:
            raise ValueError(f"--attention with {str(args.checkpoint)!r}: {error}") from None
    for image_path, files in outputs.items():
        image = read_rgb(image_path)
        result = segmenter.predict(image)
        written = [
            write_rgb(files["color"], colorize(result.labels)),
            write_rgb(files["trainIds"], result.labels),
            write_rgb(files["exposure"], exposure_picture(result.exposure)),
        ]
        if args.attention:
            (maps,) = segmenter.attention_maps([image])
            written += [write_rgb(files[f"attention_stage{stage}"], exposure_picture(w_r))
                        for stage, w_r in ((2, maps.stage2), (3, maps.stage3))]
        print(f"{image_path}: " + ", ".join(str(path) for path in written))
    return 0


PREDICTION_FILES = ("color", "trainIds", "exposure")
ATTENTION_FILES = ("attention_stage2", "attention_stage3")  # --attention: the EGLs' W_r (Eq. 1, Figure 9)


def prediction_outputs(images: list[Path], out: Path,
                       kinds: tuple[str, ...] = PREDICTION_FILES) -> dict[Path, dict[str, Path]]:
    """Where ``egnet predict`` writes the pictures of each input: ``out/<rel>/<stem>_{color,trainIds,exposure}.png``.

    ``<rel>`` is the input's folder relative to the folder all inputs share, so inputs of one name from different
    folders keep apart (``a/night.png``, ``b/night.png`` -> ``out/a/night_*``, ``out/b/night_*``) and inputs from one
    folder land in ``out`` itself. Inputs of one stem in one folder (``night.png``, ``night.jpg``) keep their
    extension in the name (``night_png_color.png``). An input given twice is predicted once.
    """
    given: dict[Path, Path] = {}  # absolute path -> the path as given, the first of repeats
    for path in images:
        given.setdefault(Path(os.path.abspath(path)), Path(path))
    absolute = list(given)
    common = Path(os.path.commonpath([path.parent for path in absolute]))
    stems = [path.parent.relative_to(common) / path.stem for path in absolute]
    repeated = {stem for stem in stems if stems.count(stem) > 1}
    outputs = {}
    for path, stem in zip(absolute, stems):
        if stem in repeated:
            stem = stem.with_name(f"{stem.name}_{path.suffix.lstrip('.').lower()}")
        outputs[given[path]] = {kind: out / stem.parent / f"{stem.name}_{kind}.png" for kind in kinds}
    colours = [files["color"] for files in outputs.values()]
    clashes = sorted({str(path) for path in colours if colours.count(path) > 1})
    if clashes:
        raise ValueError(f"several inputs would be written to {', '.join(clashes)}; rename one of them")
    return outputs


def refuse_existing(paths: list[Path], option: str) -> None:
    """Refuse to replace files that exist, before any work: nothing is overwritten unless --overwrite says so."""
    existing = [path for path in paths if path.exists() or path.is_symlink()]
    if existing:
        shown = ", ".join(str(path) for path in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{len(existing)} output file(s) in {option} exist already ({shown}); pass --overwrite to replace them, "
            f"or choose another {option}"
        )


def _demo(args: argparse.Namespace) -> int:
    from egnet_core.demo import run_demo

    report = run_demo(args.out, seed=args.seed, data=args.data, checkpoint=args.checkpoint, device=args.device)
    print(f"model: {report.checkpoint}")
    print(f"val mIoU {report.miou:.4f}, mEF1 {report.mef1:.4f}")
    for step in report.steps.values():
        print(step.summary)
    for name, reason in report.skipped.items():
        print(f"demo step {name!r} skipped: it {reason}")
    for name, path in report.pictures.items():
        print(f"  {name}: {path}")
    print(f"open {report.pictures['report']}")
    return 0


def _synth_data(args: argparse.Namespace) -> int:
    ensure_writable_dir(args.out_dir, "OUT_DIR")
    width, height = args.size
    write = WRITERS[args.dataset]
    written = write(args.out_dir, train=args.train, val=args.val, width=width, height=height, seed=args.seed)
    print(f"wrote {written.train} train and {written.val} val night scenes ({width}x{height}) in {args.dataset}'s "
          f"layout under {written.root}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from egnet_core.config import load_train_config
    from egnet_core.engine.train import saved_checkpoints, train

    config = load_train_config(args.config, args.set)
    ensure_writable_dir(Path(config.run.out_dir), "run.out_dir")
    try:
        summary = train(config, resume=args.resume)
    except KeyboardInterrupt:  # Ctrl-C: checkpoints are written atomically, so the newest one is whole
        saved = saved_checkpoints(config.run.out_dir)
        where = (f"--resume continues from {saved[0].path} (iteration {saved[0].iteration})" if saved
                 else f"no checkpoint in {config.run.out_dir} yet: run again without --resume")
        print(f"egnet train: interrupted; {where}", file=sys.stderr)
        return 130
    print(f"trained to iteration {summary.iteration}; last checkpoint {summary.last_checkpoint}; "
          f"best mIoU {summary.best_miou:.4f} on {summary.validated_on} (best.pt)")
    if summary.final_checkpoint is not None:
        print(f"final model: {summary.final_checkpoint}; score it on the test split with egnet evaluate")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from egnet_core.data.datasets import open_dataset
    from egnet_core.deploy.options import SlidingWindow
    from egnet_core.engine.evaluation import evaluate
    from egnet_core.reports.report import write_report

    ensure_writable_dir(args.out, "--out")
    window = (
        SlidingWindow(size=args.sliding_window, stride=args.stride or args.sliding_window)
        if args.sliding_window else None
    )
    segmenter = build_segmenter(
        args, input_size=None if args.native_size else args.eval_size,
        flip=args.flip, scales=tuple(args.scales), sliding_window=window,
    )
    dataset = open_dataset(args.dataset, args.data, args.split)
    result = evaluate(segmenter, dataset, batch_size=args.batch, average=args.average, limit=args.limit, progress=True)
    settings = {key: str(value) for key, value in vars(args).items() if key not in ("run", "command", "verbose")}
    files = write_report(
        result, args.out, title=f"{args.dataset} {args.split}: {args.checkpoint.name}", config=settings
    )
    scores = result.scores
    print(f"{result.images} images: mIoU {scores.miou:.4f}, mEF1 {scores.mef1:.4f}, "
          f"pixel accuracy {scores.pixel_accuracy:.4f} ({scores.average} EF1)")
    print(f"report: {files.markdown}, metrics: {files.metrics}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from egnet_core.data.datasets import open_images
    from egnet_core.data.statistics import exposure_histogram, format_histogram_table, plot_exposure_histogram

    out = args.out or Path(f"exposure_histogram_{args.split}.png")
    ensure_writable_dir(out, "--out", folder=out.parent)
    images = open_images(args.dataset, args.data, args.split)
    if not images.labelled:
        print(f"no labels: {images.unlabelled_reason}. Counting the exposure of the images alone; the label "
              "statistics (image/label pairs, share of ignored pixels) are skipped")
    histogram = exposure_histogram(images.dataset)
    print(f"exposure of {histogram.images} {args.split} images in {args.data} (the paper's Figure 4)")
    print(format_histogram_table(histogram))
    plot_exposure_histogram(histogram, out, title=f"{args.dataset} {args.split}: pixels per image by exposure")
    print(f"plot: {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np

    from egnet_core.data.synthetic import render_night_scene
    from egnet_core.deploy.export import export_onnx, onnx_opset
    from egnet_core.deploy.int8_pt2e import quantize_pt2e
    from egnet_core.deploy.precision_choice import LABEL_AGREEMENT_FLOOR
    from egnet_core.deploy.quantize import calibration_images, quantize_onnx

    pt2 = _export_form(args)
    ensure_writable_dir(args.out, "--out/--onnx", folder=args.out.parent)
    count = CALIBRATION_FRAMES if args.calibration_frames is None else args.calibration_frames
    if count < 1:
        raise ValueError(f"--calibration-frames must be at least 1, got {count}")
    calibration = calibration_images(args.calibration, count) if args.int8 else None
    if pt2:
        floor = args.int8_floor
        guard = Int8Guard() if floor is None else Int8Guard(min_agreement=floor) if floor > 0 else None
        keep = tuple(name for name in args.int8_keep.split(",") if name) if args.int8_keep is not None else None
        quantized = quantize_pt2e(args.checkpoint, args.out, calibration, size=args.size, guard=guard, keep=keep,
                                  float_precision=args.int8_kept_precision or "auto", gptq=args.gptq)
        path, selection, kept_in = quantized.path, quantized.selection, quantized.kept_precision
    else:
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / "fp32.onnx" if args.int8 else args.out
            path = export_onnx(args.checkpoint, target, size=args.size, dynamic=args.dynamic, opset=args.opset)
            if args.int8:
                path = quantize_onnx(path, args.out, calibration, size=args.size)
    # The written model against the checkpoint, on a generated night frame of the export size.
    frame = render_night_scene(np.random.default_rng(0), width=args.size[0], height=args.size[1]).image
    exported = Segmenter.from_checkpoint(path, input_size=args.size).predict(frame)
    reference = Segmenter.from_checkpoint(args.checkpoint, optimize=False).predict(frame)
    if pt2:
        form, runtime = f"PT2E int8 for PyTorch/Inductor, batch 1, {args.size[0]}x{args.size[1]}", "int8"
    else:
        form = "dynamic batch and size" if args.dynamic else "batch 1, %dx%d" % args.size
        form, runtime = f"opset {onnx_opset(path)}, {form}", "ONNX Runtime"
    if args.int8:
        form += f", int8 calibrated on {len(calibration)} images from {args.calibration}"
    if args.gptq:
        form += ", weights rounded by GPTQ"
    if pt2 and selection is not None:
        trials = f"{len(selection.trials)} trial{'s' if len(selection.trials) > 1 else ''}"
        kept = ", ".join(selection.chosen.float_blocks)
        form += f", blocks kept out of int8 in {kept_in} after {trials}: {kept}" if kept else (
            f", every block int8 after {trials}")
        if not selection.passed:
            form += f" (short of the floor {guard.min_agreement:g})"
    agreement = (exported.labels == reference.labels).mean()
    print(f"wrote {path} ({form}); {runtime} against PyTorch on a night frame: {agreement:.4%} of "
          f"labels equal, exposure max difference {np.abs(exported.exposure - reference.exposure).max():.2e}")
    if agreement < LABEL_AGREEMENT_FLOOR:
        print(f"egnet export: warning: fewer than {LABEL_AGREEMENT_FLOOR:.1%} of labels agree with PyTorch; compare "
              "`egnet evaluate` of both files on your data before you deploy this one", file=sys.stderr)
    return 0


def _export_form(args: argparse.Namespace) -> bool:
    """Whether ``egnet export`` writes a PT2E int8 ``.pt2`` (else an ``.onnx``); ValueError for options that do
    not fit together."""
    from egnet_core.deploy.int8_pt2e import PT2_SUFFIX

    suffix = args.out.suffix
    if suffix not in (".onnx", PT2_SUFFIX):
        raise ValueError(f"--out/--onnx must name a .onnx file (ONNX Runtime) or, with --int8, a {PT2_SUFFIX} file "
                         f"(PT2E int8), got {str(args.out)!r}")
    if suffix == PT2_SUFFIX and not args.int8:
        raise ValueError(f"a {PT2_SUFFIX} file is the int8 form only: add --int8 --calibration DIR, or write "
                         f"a .onnx file, got {str(args.out)!r}")
    if suffix == PT2_SUFFIX and (args.dynamic or args.opset != OPSET):
        raise ValueError(f"--dynamic and --opset are for .onnx files; a {PT2_SUFFIX} int8 model has batch 1 and "
                         "the size given by --size")
    if args.int8 and args.calibration is None:
        raise ValueError("--int8 needs --calibration, a folder of images like the ones the model will see")
    if not args.int8 and (args.calibration, args.calibration_frames) != (None, None):
        raise ValueError("--calibration and --calibration-frames are for --int8 only")
    if args.int8_floor is not None and suffix != PT2_SUFFIX:
        raise ValueError(f"--int8-floor is for {PT2_SUFFIX} files (PT2E int8), got {str(args.out)!r}")
    if args.int8_floor is not None and not 0.0 <= args.int8_floor <= 1.0:
        raise ValueError(f"--int8-floor must be a share of the labels in [0, 1], got {args.int8_floor!r}")
    if args.int8_kept_precision is not None and suffix != PT2_SUFFIX:
        raise ValueError(f"--int8-kept-precision is for {PT2_SUFFIX} files (PT2E int8), got {str(args.out)!r}")
    if args.int8_keep is not None and suffix != PT2_SUFFIX:
        raise ValueError(f"--int8-keep is for {PT2_SUFFIX} files (PT2E int8), got {str(args.out)!r}")
    if args.gptq and suffix != PT2_SUFFIX:
        raise ValueError(f"--gptq is for {PT2_SUFFIX} files (PT2E int8), got {str(args.out)!r}")
    if args.int8_kept_precision is not None and args.int8_floor == 0 and not args.int8_keep:
        raise ValueError("--int8-kept-precision has no block to apply to: --int8-floor 0 makes every block int8")
    return suffix == PT2_SUFFIX


def _bench(args: argparse.Namespace) -> int:
    from egnet_core.deploy.bench_weights import default_cache_dir
    from egnet_core.deploy.benchmark import CONFIGURATION_NAMES, format_benchmark, run_benchmark, write_benchmark
    from egnet_core.deploy.options import resolve_device

    ensure_writable_dir(args.out, "--out")
    if args.threads is not None:
        torch.set_num_threads(resolve_threads(args.threads, name="--threads"))
    configurations = tuple(dict.fromkeys(CONFIGURATION_NAMES[name] for name in args.only or CONFIGURATION_NAMES))
    result = run_benchmark(device=resolve_device(args.device), quick=args.quick, checkpoint=args.checkpoint,
                           weights_cache=args.weights_cache or default_cache_dir(os.environ),
                           configurations=configurations)
    json_path, markdown = write_benchmark(result, args.out)
    print(format_benchmark(result))
    print(f"written: {json_path}, {markdown}")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``egnet train``, which ``training/train.py`` takes too."""
    parser.add_argument("--config", help="YAML config (default: built-in defaults, the paper's settings)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field, e.g. --set optim.lr=0.01 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run.out_dir")
    parser.set_defaults(run=_train)


# Subcommands that other packages add: each entry point is a function that registers its parsers. The ROS side
# adds `egnet bag ...` this way, so this library never imports it and works without the `ros` extra.
COMMANDS_GROUP = "egnet.commands"


def add_plugin_commands(commands: argparse._SubParsersAction) -> None:
    for entry in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        try:
            register = entry.load()
        except ImportError as error:  # the extra that this command comes with is not installed
            extra = entry.extras[0] if entry.extras else "ros"
            command = commands.add_parser(
                entry.name, help=f"(not installed: needs the {extra!r} extra, {INSTALL.format(extra=extra)})")
            # Whatever follows (`egnet bag segment IN OUT ...`) is taken, so that the answer is what to install.
            command.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            command.set_defaults(run=functools.partial(_missing_extra, MissingExtra(
                error.name or str(error), extra, f"egnet {entry.name}")))
            continue
        register(commands)


def _missing_extra(error: MissingExtra, args: argparse.Namespace) -> int:
    raise error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="egnet", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="segment image files with a checkpoint")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    add_inference_arguments(predict, precision=AUTO_PRECISION)
    predict.add_argument("--out", required=True, type=Path, help="folder for the label and exposure pictures")
    predict.add_argument("--input-size", type=parse_size, help="network input WIDTHxHEIGHT (default: image size)")
    predict.add_argument("--overwrite", action="store_true", help="replace pictures an earlier run wrote in --out")
    predict.add_argument("--attention", action="store_true",
                         help="also write the attention maps W_r of the Exposure Guidance Layers after stages 2 and "
                              "3 (Eq. 1, the paper's Figure 9) as NAME_attention_stage2.png and "
                              "NAME_attention_stage3.png (EGNet variant egnet only)")
    predict.set_defaults(run=_predict)

    synth = commands.add_parser("synth-data", help="write generated night scenes in a data set's on-disk layout")
    synth.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    synth.add_argument("--dataset", default="nightcity", choices=tuple(WRITERS),
                       help="whose release layout and file names to write (default: nightcity)")
    synth.add_argument("--train", type=int, default=8, help="training images (default: 8)")
    synth.add_argument("--val", type=int, default=4, help="validation images (default: 4)")
    synth.add_argument("--size", type=parse_size, default=(1024, 512), help="WIDTHxHEIGHT (default: 1024x512)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth_data)

    add_train_arguments(commands.add_parser("train", help="train EGNet (the same as python training/train.py)"))

    evaluation = commands.add_parser("evaluate", help="score a checkpoint on a data set (mIoU, EF1, mEF1)")
    add_inference_arguments(evaluation, precision="fp32")  # published metrics: the same on every machine
    evaluation.add_argument("--data", required=True, type=Path, help="data set root")
    evaluation.add_argument("--dataset", default="nightcity", choices=DATASETS)
    evaluation.add_argument("--split", default="val", choices=("train", "val"))
    evaluation.add_argument("--out", required=True, type=Path, help="report folder")
    evaluation.add_argument("--eval-size", type=parse_size, default=(900, 900),
                            help="network input WIDTHxHEIGHT, the paper's 900x900 by default")
    evaluation.add_argument("--native-size", action="store_true", help="run at each image's own size")
    evaluation.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    evaluation.add_argument("--scales", type=float, nargs="+", default=[1.0], help="multi-scale factors")
    evaluation.add_argument("--sliding-window", type=parse_size, help="window WIDTHxHEIGHT (default: whole image)")
    evaluation.add_argument("--stride", type=parse_size, help="window stride WIDTHxHEIGHT (default: the window)")
    evaluation.add_argument("--average", default="micro", choices=("micro", "macro", "weighted"),
                            help="how EF1 averages classes inside a bin (default: micro)")
    evaluation.add_argument("--batch", type=int, default=1)
    evaluation.add_argument("--limit", type=int, help="only the first N images")
    evaluation.set_defaults(run=_evaluate)

    stats = commands.add_parser("stats", help="pixels per exposure bin, the paper's Figure 4")
    stats.add_argument("--data", required=True, type=Path,
                       help="data set root, or any folder of images (without labels the label statistics are skipped)")
    stats.add_argument("--dataset", default="nightcity", choices=DATASETS)
    stats.add_argument("--split", default="train", choices=("train", "val"))
    stats.add_argument("--out", type=Path, help="plot file (default: exposure_histogram_SPLIT.png)")
    stats.set_defaults(run=_stats)

    export = commands.add_parser("export", help="export a checkpoint to ONNX, for ONNX Runtime and TensorRT")
    export.add_argument("--checkpoint", required=True, type=Path)
    export.add_argument("--out", "--onnx", dest="out", required=True, type=Path,
                        help="the file to write: .onnx (ONNX Runtime, TensorRT), or with --int8 .pt2 (PT2E int8 "
                             "run by PyTorch/Inductor, the fastest on CPUs with AMX or VNNI) or .onnx")
    export.add_argument("--size", type=parse_size, default=(1024, 512),
                        help="input WIDTHxHEIGHT of a static graph; "
                             "the tracing example of a dynamic one (default: 1024x512)")
    export.add_argument("--dynamic", action="store_true", help="any batch and size of at least 32x32")
    export.add_argument("--opset", type=int, default=OPSET,
                        help=f"ONNX opset, {MIN_OPSET} up to the newest the onnx package knows (default: {OPSET})")
    export.add_argument("--int8", action="store_true",
                        help="quantize to int8 for CPUs with AMX or VNNI (needs --calibration)")
    export.add_argument("--calibration", type=Path,
                        help="folder of camera frames or training images (PNG/JPEG) to calibrate int8 ranges on")
    export.add_argument("--calibration-frames", type=int,
                        help=f"how many of those images, evenly spaced (default: {CALIBRATION_FRAMES})")
    export.add_argument("--int8-floor", type=float,
                        help=f"for a .pt2: keep the blocks most sensitive to int8 out of it until this share of "
                             f"the labels (and the exposure within {Int8Guard().max_exposure_mad:g}) matches the float "
                             f"model on the first calibration images; 0: every block int8 (default: "
                             f"{Int8Guard().min_agreement:g}, a tenth of a point over the guard)")
    export.add_argument("--int8-keep", metavar="BLOCKS",
                        help="for a .pt2: comma-separated blocks to keep out of int8 instead of selecting them (the "
                             "names an earlier export printed); the floor then only judges them")
    export.add_argument("--int8-kept-precision", choices=FLOAT_PRECISIONS,
                        help="for a .pt2: the precision of the blocks kept out of int8; auto (default): the faster "
                             "of fp32 and bf16 on this CPU, which the file then expects of the CPUs it runs on")
    export.add_argument("--gptq", action="store_true",
                        help="for a .pt2: round the int8 weights by GPTQ on the calibration images rather than to "
                             "nearest (fewer blocks kept out of int8; the export takes longer, and memory for one "
                             "K×K matrix per convolution: 0.7 GB for ResNet-18, 2.1 GB for ResNet-101)")
    export.set_defaults(run=_export)

    bench = commands.add_parser("bench", help="every inference path side by side at 1024x512: JSON and Markdown")
    bench.add_argument("--out", required=True, type=Path, help="folder for bench.json and bench.md")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions and batch sizes (minutes on a CPU)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    bench.add_argument("--checkpoint", type=Path, help="also a trained checkpoint, whose label agreement counts")
    bench.add_argument("--weights-cache", type=Path, metavar="DIR",
                       help="folder of the weights each configuration is trained to once for the accuracy guards "
                       "(default: $XDG_CACHE_HOME/egnet/bench-weights, or ~/.cache/egnet/bench-weights)")
    bench.add_argument("--only", action="append", choices=("resnet101-os8", "resnet18-os16"),
                       help="bench this configuration only (repeatable; default: both)")
    bench.add_argument("--threads", type=int, help="CPU threads, at most the available CPUs (default: torch's choice)")
    bench.set_defaults(run=_bench)

    add_study_commands(commands)
    add_plugin_commands(commands)

    demo = commands.add_parser("demo", help="the end-to-end demo on generated night scenes")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="report folder (default: demo-output)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--data", type=Path, help="a real NightCity root (with --checkpoint): skip the synthetic steps")
    demo.add_argument("--checkpoint", type=Path, help="a trained checkpoint (with --data)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, OSError, MissingExtra) as error:
        print(f"egnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # torch's and ONNX Runtime's device errors (CUDA out of memory, for one)
        if args.verbose:
            raise
        print(f"egnet {args.command}: error: {error} (run with -v for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
