"""``topos train texture --out DIR``: train TOPOS-Texture on the training split's bakes (progress, eval, checkpoints)."""

from __future__ import annotations

import sys
from pathlib import Path

from .train_cmd import add_training_options, apply_training_options


def register(models) -> None:
    p = models.add_parser("texture", help="TOPOS-Texture: completes the photo bake in UV space",
                          description="Train TOPOS-Texture (partial photo bake + UV geometry → complete de-lit "
                                      "albedo and roughness) on the training split's texture bank "
                                      "(python -m topos_server.data.texture_bank --split train). "
                                      "Needs `topos assets import` first.")
    p.add_argument("--config", default="small", help="size: tiny, small (CPU), base (GPU)")
    add_training_options(p, steps=2000, batch_of="maps", batch_size=12, lr="1e-3", eval_every=100)
    p.add_argument("--bank", type=Path, metavar="DIR", help="texture bank root (default: $TOPOS_HOME/texture_bank)")
    p.add_argument("--crop", type=int, help="train on random crops of this side in texels (default 0: whole maps)")
    p.add_argument("--views-per-item", type=int, help="hidden views (and their fill) per bake in the pool (default 4)")
    p.add_argument("--mirror", action="store_true", help="also train on each bake's face mirrored left/right")
    p.add_argument("--colour-augment", type=float, metavar="P",
                   help="share of training examples given a random exposure and tint, 0–1 (default 0; "
                        "against memorising the training faces, effect not measured yet)")
    p.add_argument("--workers", type=int, help="processes making the view pool and the batches (default 0: none)")
    p.add_argument("--validation-items", type=int,
                   help="training-split bakes kept out of the batches for validation (default 8)")
    p.add_argument("--eval-examples", type=int, help="hidden views of them scored at each evaluation (default 16)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from topos_server.data.texture_bank import TextureBank
    from topos_server.training.texture import TextureTrainingConfig, train

    config = TextureTrainingConfig(size=args.config, seed=args.seed)
    apply_training_options(config, args)
    if args.crop is not None:
        if args.crop < 0:
            raise ValueError("--crop must be 0 (whole maps) or a positive number of texels")
        config.crop = args.crop or None
    if args.views_per_item is not None:
        if args.views_per_item <= 0:
            raise ValueError("--views-per-item must be positive")
        config.views_per_item = args.views_per_item
    if args.workers is not None:
        if args.workers < 0:
            raise ValueError("--workers must be 0 or more")
        config.workers = args.workers
    config.mirror_items = args.mirror
    if args.colour_augment is not None:
        if not 0.0 <= args.colour_augment <= 1.0:
            raise ValueError(f"--colour-augment must be a share in [0, 1], got {args.colour_augment:g}")
        config.colour_probability = args.colour_augment
    for name in ("validation_items", "eval_examples"):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
            setattr(config, name, value)
    bank = TextureBank("train", args.bank)  # never the held-out split
    if not len(bank):
        raise ValueError(f"texture bank {bank.folder} is empty; build it first: "
                         "python -m topos_server.data.texture_bank --split train")
    bank.require_current()
    print(f"{len(bank)} training bakes from {bank.folder}", file=sys.stderr, flush=True)

    def progress(record: dict) -> None:
        evaluated = "eval_l1_fill" in record
        if record["step"] % 10 and not evaluated:
            return
        line = (f"step {record['step']}/{config.steps} loss {record['loss']:.4f} "
                f"albedo {record['albedo']:.4f}  {record['elapsed_s']:.0f} s")
        if evaluated:
            learned = ", ".join(f"{record[key]:.4f} ({key.rsplit('_', 1)[1]})" for key in sorted(record)
                                if key.startswith("eval_l1_learned_"))
            line += f"  eval hidden-texel L1 learned {learned}, baker's fill {record['eval_l1_fill']:.4f}"
        print(line, file=sys.stderr, flush=True)

    records = (bank[i] for i in range(len(bank)))
    record = train(config, args.out, records, resume=args.resume, progress=progress, device=args.device)
    print(f"model written to {args.out / 'model'} (step {record.get('step')})", file=sys.stderr)
    return 0
