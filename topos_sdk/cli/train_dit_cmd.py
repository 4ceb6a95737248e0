"""``topos train dit --config S --pairs DIR --out DIR``: train TOPOS-DiT (portrait → TOPOS-VAE latent)."""

from __future__ import annotations

import sys
from pathlib import Path

from .train_cmd import add_training_options, apply_training_options


def register(models) -> None:
    p = models.add_parser("dit", help="TOPOS-DiT: one portrait → a head's TOPOS-VAE latent",
                          description="Train TOPOS-DiT on (portrait, head) pairs: folders of pair shards written by "
                                      "`python -m topos_server.data.synthetic_portraits`, or folders of a studio's "
                                      "own portraits with head meshes of any topology (NAME.jpg|png + NAME.obj|ply|usd*: "
                                      "each mesh is brought into the reference topology with convert first).")
    p.add_argument("--config", default="small", help="size: tiny, small (CPU), base, large (GPU)")
    p.add_argument("--pairs", required=True, type=Path, action="append", metavar="DIR",
                   help="training pairs (repeatable)")
    p.add_argument("--eval-pairs", type=Path, metavar="DIR", help="held-out pairs for the periodic evaluation")
    add_training_options(p, steps=20000, batch_of="pairs", batch_size=32, lr="3e-4", eval_every=500)
    p.add_argument("--vae", type=Path, metavar="MODEL_DIR", help="the TOPOS-VAE whose latents to generate "
                                                                  "(default: the bundled one)")
    p.add_argument("--identity-condition", action="store_true",
                   help="also condition on the classic landmark fit's identity coefficients (the DiT then learns "
                        "what the linear fit gets wrong; inference runs that fit first; implies --no-mirror)")
    p.add_argument("--no-mirror", action="store_true",
                   help="do not also train on each pair's mirror image (default: mirrored, left/right swapped)")
    p.set_defaults(handler=run)


IDENTITY_MODES = 100  # the ICT head model's identity shapes


def run(args) -> int:
    from topos_server.training.dit import DiTTrainingConfig, train

    config = DiTTrainingConfig(size=args.config, seed=args.seed,
                               eval_pairs=str(args.eval_pairs) if args.eval_pairs else None,
                               vae_weights=str(args.vae) if args.vae else None)
    config.pairs = [str(folder) for folder in _shard_folders(args.pairs)]
    if args.identity_condition:
        config.identity_condition = IDENTITY_MODES
        config.mirror = False
    if args.no_mirror:
        config.mirror = False
    apply_training_options(config, args)

    def progress(record) -> None:
        if isinstance(record, str):
            print(record, file=sys.stderr, flush=True)
            return
        if record["step"] % 25 and "eval_skin_error_mm" not in record:
            return
        line = f"step {record['step']}/{config.steps} loss {record['loss']:.4f}  {record['elapsed_s']:.0f} s"
        if "eval_skin_error_mm" in record:
            line += (f"  eval skin {record['eval_skin_error_mm']:.2f} mm "
                     f"(VAE floor {record['eval_vae_floor_mm']:.2f} mm)")
        print(line, file=sys.stderr, flush=True)

    record = train(config, args.out, resume=args.resume, progress=progress, device=args.device)
    print(f"model written to {args.out / 'model'} (step {record.get('step')})", file=sys.stderr)
    return 0


def _shard_folders(folders: list[Path]) -> list[Path]:
    """Shard folders as given; a studio folder of portraits + meshes is converted into shards first."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"--pairs {folder}: not a folder")
        if any(folder.glob("shard_*.npz")):
            out.append(folder)
            continue
        from topos_server.data.studio_pairs import studio_pair_shards

        out.append(studio_pair_shards(folder, progress=lambda line: print(line, file=sys.stderr, flush=True)))
    return out
