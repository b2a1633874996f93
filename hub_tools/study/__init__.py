"""The study end to end: `run_demo` builds the data, bootstraps the baby, trains, evaluates and publishes."""
