"""The comparison lab: one question set answered by several routes, measured and compared.

A route ("arm") is a mode (model alone, documents, or both) and the LoRA adapters attached.
Every answer is made by the real ``Assistant`` (the same prompts as ``bastion ask``), greedy and
seeded, in a chat store private to the run, and appended to the run folder as it comes, so a
killed run continues where it stopped. The report compares the arms with bootstrap intervals and
ends with a recommendation computed from the measurements.

Modules: ``questions`` (the question set), ``arms``, ``metrics`` (scoring one answer),
``stats`` (bootstrap intervals), ``run_folder`` (what a run keeps on disk), ``runner`` (the
answering loop, as a generator of progress events), ``session`` (checks and wiring on the app),
``summary`` (per-arm figures, comparisons, recommendation), ``report`` and ``report_html``
(the files written), ``plots`` (inline SVG), ``costs`` (what each route costs). The freshness
experiment: ``fact_changes`` (which facts to change, and to what), ``freshness`` (copy, change,
re-sync, ask again), ``freshness_history`` and ``freshness_report`` (its report section).
"""
