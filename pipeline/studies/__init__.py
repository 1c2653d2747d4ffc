"""Commands across experiments (not DVC stages): the paper's studies as queued experiments
(ablations), their comparison tables (report), the metric sanity check (baselines) and the speed
benchmark. They import library modules (and each other: ablations writes its table with report), never
a stage."""
