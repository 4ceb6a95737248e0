"""``topos train vae --config S --out DIR``: train TOPOS-VAE on synthetic heads (progress, eval, checkpoints)."""

from __future__ import annotations

import sys
from pathlib import Path

from .train_cmd import add_training_options, apply_training_options


def register(models) -> None:
    p = models.add_parser("vae", help="TOPOS-VAE: any topology → the reference topology",
                          description="Train TOPOS-VAE (any topology → the reference topology) on synthetic heads "
                                      "generated on the fly from the ICT head model. Needs `topos assets import` first.")
    p.add_argument("--config", default="small", help="size: tiny, small (CPU), base, large (GPU)")
    add_training_options(p, steps=3000, batch_of="heads", batch_size=12, lr="4e-4", eval_every=250)
    p.add_argument("--workers", type=int, default=1, help="data worker processes (default 1)")
    p.add_argument("--init-from", type=Path, metavar="MODEL_DIR",
                   help="fine-tune: start from these weights (e.g. the bundled model) with a fresh optimiser")
    p.add_argument("--control-vertices", type=int, metavar="M",
                   help="decode at M control vertices and upsample (0: every vertex; default 2000 for a new model)")
    p.add_argument("--skin-modes", type=int, metavar="S",
                   help="add S linear modes (the rest of the head model's identity span) at full resolution on the skin")
    p.add_argument("--latent-coefficients", action="store_true",
                   help="read the linear modes' coefficients from the flattened latent set too")
    p.add_argument("--basis-precision", choices=("float32", "float16"),
                   help="store the deformation basis buffers in this precision (float16: half the file)")
    p.add_argument("--expression-probability", type=float, metavar="P",
                   help="fraction of training heads with an expression (default 0.6; the rest are neutral)")
    p.add_argument("--head-frame-probability", type=float, metavar="P",
                   help="fraction of training heads left in the head model's frame at true size instead of "
                        "canonicalised (default 0; what HeadLatents and TOPOS-DiT feed the VAE)")
    p.set_defaults(handler=run)




DEFAULT_CONTROL_VERTICES = 2000


def run(args) -> int:
    from topos_server.training.vae import TrainingConfig, train

    config = TrainingConfig(size=args.config, seed=args.seed, workers=args.workers)
    apply_training_options(config, args)
    if args.init_from is not None:
        if args.resume:
            raise ValueError("--init-from starts a new run; --resume continues one: pass only one of them")
        if not (args.init_from / "config.json").is_file():
            raise ValueError(f"--init-from {args.init_from}: no model there (expected config.json + safetensors)")
        config.init_from = str(args.init_from)
    if args.control_vertices is not None:
        if args.control_vertices < 0:
            raise ValueError("--control-vertices must be 0 (decode every vertex) or positive")
        config.control_vertices = args.control_vertices
    elif args.init_from is None:
        config.control_vertices = DEFAULT_CONTROL_VERTICES
    if args.skin_modes is not None:
        config.model_overrides["skin_modes"] = args.skin_modes
    if args.latent_coefficients:
        config.model_overrides["latent_coefficients"] = True
    if args.basis_precision is not None:
        config.model_overrides["basis_precision"] = args.basis_precision
    if args.expression_probability is not None:
        if not 0.0 <= args.expression_probability <= 1.0:
            raise ValueError("--expression-probability must be within [0, 1]")
        config.data_overrides["expression_probability"] = args.expression_probability
    if args.head_frame_probability is not None:
        if not 0.0 <= args.head_frame_probability <= 1.0:
            raise ValueError("--head-frame-probability must be within [0, 1]")
        config.data_overrides["head_frame_probability"] = args.head_frame_probability

    def progress(record: dict) -> None:
        if record["step"] % 10 and "eval_error_mm" not in record:
            return
        line = (f"step {record['step']}/{config.steps} loss {record['loss']:.4f} "
                f"L1 {record['vertex_l1']:.4f} cm  {record['elapsed_s']:.0f} s")
        if "eval_error_mm" in record:
            line += f"  eval {record['eval_error_mm']:.2f} mm (skin {record['eval_surface_error_mm']:.2f} mm)"
        print(line, file=sys.stderr, flush=True)

    record = train(config, args.out, resume=args.resume, progress=progress, device=args.device)
    print(f"model written to {args.out / 'model'} (step {record.get('step')})", file=sys.stderr)
    return 0
