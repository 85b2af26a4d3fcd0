"""The `autotag` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autotag.database import SchemaMismatchError
from autotag.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autotag", description="Auto-tagging pipeline for a cloud drive.")
    parser.add_argument("--template", type=Path, help="template.yaml to take queue rules from (default: found)")
    parser.add_argument("--data-dir", type=Path, default=None, help="embedded database and local S3 (default .autotag)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the local pipeline over a folder of documents, offline")
    run.add_argument("docs_dir", type=Path)
    run.add_argument("--workspace", required=True, help="workspace name: the first segment of every key")
    run.add_argument("--out", type=Path, required=True, help="folder for assignments.json")

    invoke = commands.add_parser("invoke", help="run one handler on one event file, like `sam local invoke -e`")
    invoke.add_argument("function", choices=["embed", "cluster", "reprocess"])
    invoke.add_argument("--event", type=Path, required=True)

    up_command = commands.add_parser("up", help="keep a local stack running: moto on 127.0.0.1, database, handlers")
    up_command.add_argument("--port", type=int, default=4566, help="local AWS endpoint port (default 4566; 0: any)")

    status_command = commands.add_parser("status", help="documents, categories and queue depths of the local stack")
    status_command.add_argument("--workspace", help="only this workspace")
    status_command.add_argument("--json", action="store_true", help="machine-readable output")

    reprocess = commands.add_parser(
        "reprocess", help="redrive the DLQs and reconcile S3 with the database, then embed what it re-enqueued"
    )
    reprocess.add_argument("--workspace", help="reconcile only this workspace (no redrive); default: all")

    args = parser.parse_args(argv)
    from autotag.local.template_rules import TemplateError, find_template
    from autotag.settings import get_settings

    try:
        data_dir = args.data_dir or get_settings().data_dir
        if args.command == "status":  # reads the database and the running stack, not the template
            from autotag.local.status import print_status, status

            print_status(status(data_dir, workspace=args.workspace), sys.stdout, as_json=args.json)
            return 0
        template = args.template or find_template()
        if args.command == "run":
            from autotag.local.run import run as run_pipeline

            run_pipeline(args.docs_dir, args.workspace, args.out, template=template, data_dir=data_dir, err=sys.stderr)
        elif args.command == "up":
            from autotag.local.up import up as serve

            try:
                serve(template=template, data_dir=data_dir, port=args.port, out=sys.stdout, err=sys.stderr)
            except OSError as exc:  # the port is taken
                print(f"error: {exc}", file=sys.stderr)
                return 2
        elif args.command == "reprocess":
            from autotag.local.run import reprocess as reprocess_locally

            result = reprocess_locally(args.workspace, template=template, data_dir=data_dir, err=sys.stderr)
            print(json.dumps(result, indent=2, default=str))
        else:
            from autotag.local.run import invoke as invoke_handler

            response = invoke_handler(args.function, args.event, template=template, data_dir=data_dir)
            print(json.dumps(response, indent=2, default=str))
    except (SettingsError, TemplateError, SchemaMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
