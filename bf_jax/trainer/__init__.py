"""What every task shares: the step loop, jitted steps, checkpoints, optimizers, sharding, logs,
plots, the config schema and its shared checks, and run setup. Never imports a task."""
