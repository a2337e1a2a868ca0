"""``python -m fastmlp.bench`` (same as ``fastmlp bench``): see fastmlp/bench/run.py."""
from fastmlp.bench.run import main

raise SystemExit(main())
