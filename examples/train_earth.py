"""Train Riemannian Flow Matching on an earth data set from Python and map the learned density.

python examples/train_earth.py [--data volcano|earthquake|flood|PATH.csv] [--steps 2000]
"""

import argparse

from manifold_flows import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="volcano")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="runs/example-earth")
    args = parser.parse_args()
    cfg = TrainConfig(data=args.data, steps=args.steps, eval_every=max(1, args.steps // 4), out=args.out)
    metrics = train(cfg)
    print(f"test NLL {metrics['test_nll']:.3f} nats (uniform: {metrics['base_nll']:.3f}); map: {metrics['figure']}")


if __name__ == "__main__":
    main()
