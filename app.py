#!/usr/bin/env python3
"""hotshard's CDK app: `cdk synth` (via cdk.json) or `python app.py` synthesize the same."""

from infra.app import main

if __name__ == "__main__":
    main()
