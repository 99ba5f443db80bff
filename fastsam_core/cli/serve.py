"""`fastsam serve --model M [--host 127.0.0.1] [--port 8000]`: a local page for prompts (#18)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a local web page: open an image, click points, drag boxes, type prompts",
        description="Serve a small web page and JSON API for interactive prompts. Each image runs "
        "through everything mode once (cached), then point, box and text prompts select masks "
        "in milliseconds. Binds 127.0.0.1 unless --host says otherwise.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="fastsam-s, fastsam-x (downloaded once) or a .pt/.safetensors path",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to "
        "the network, without authentication)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument(
        "--imgsz", type=int, default=None, help="letterbox size (default: the checkpoint's)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest image upload in MB (default 20)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=4096 * 4096,
        help="largest image in pixels, width x height (default 4096*4096)",
    )
    parser.add_argument(
        "--cache-images",
        type=int,
        default=8,
        help="images whose everything-mode results stay cached (default 8)",
    )
    parser.add_argument("--clip-model", default="ViT-B-32", help="open_clip model of text prompts")
    parser.add_argument(
        "--clip-weights",
        default="openai",
        help="open_clip pretrained tag or a local checkpoint file (offline)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")

    from fastsam_core.predictor import Predictor
    from fastsam_core.prompts import ClipSettings
    from fastsam_core.serve import SegmentService, ServeLimits, make_server

    limits = ServeLimits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        cache_images=args.cache_images,
    ).validated()  # before the model loads
    clip = ClipSettings(model=args.clip_model, weights=args.clip_weights)
    predictor = Predictor(args.model, device=args.device, imgsz=args.imgsz, clip=clip)
    service = SegmentService(predictor, limits)
    try:
        server = make_server(service, args.host, args.port)
    except OSError as err:  # port taken, address not on this machine, no permission
        raise OSError(
            f"cannot listen on {args.host}:{args.port}: {err.strerror or err}; choose another "
            "--port (0 picks a free one) or --host"
        ) from err
    service.warm_up()
    print(f"fastsam serve: {server.url} (model {args.model}, Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("fastsam serve: stopped", flush=True)
    finally:
        server.server_close()
    return 0
