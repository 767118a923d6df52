"""The two pipelines (training, monitoring) and the command line that compiles, runs, submits and schedules them.

    python pipeline.py compile [--registry R] [--tag T] [--gpu-node-key K --gpu-node-value V] [--gpu-limit N]
                               [--arize-secret S] [--storage-endpoint URL]
    python pipeline.py run --local [--pipeline training|monitoring] [--output-dir DIR] [--param name=value ...]
                               [--verbose]
    python pipeline.py submit --host URL [--pipeline training|monitoring] [--param name=value ...] [--upload] [--wait]
    python pipeline.py schedule --host URL --cron "0 0 6 * * *" [--param name=value ...]
    python pipeline.py unschedule --host URL [--name NAME | --id ID]

The code lives in the package components/pipelines/ (settings, stages, definitions, local, client, cli);
this file is the entry point the README names.
"""

import sys

from components.pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main())
