# Tables (CSV + Markdown, published numbers beside ours) and learning-curve plots (PNG + PDF),
# both marked as report items for `snakemake --report report.html`.


rule aggregate:
    input:
        summaries=all_run_files("summary.json"),
        progress=all_run_files("progress.csv"),
        reference=REFERENCE,
    output:
        runs=TABLES["runs"],
        summary=TABLES["summary"],
        comparison=report(
            TABLES["comparison"],
            category="Tables",
            caption="../report/comparison.rst",
        ),
        markdown=report(
            TABLES["markdown"],
            category="Tables",
            caption="../report/comparison.rst",
        ),
        curves=TABLES["curves"],
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    params:
        planned=expected_runs_records(RUNS, RESULTS),
        envs=ENVS,
        analysis=config["analysis"],
        title=f"trpo-bench comparison: {config['experiment']}",
    script:
        "../scripts/aggregate.py"


rule plots:
    input:
        curves=TABLES["curves"],
        comparison=TABLES["comparison"],
    output:
        envs=[
            report(
                f"{stem}.{fmt}",
                category="Learning curves",
                subcategory="per env",
                caption="../report/curves.rst",
            )
            for stem in PLOT_STEMS[:-1]
            for fmt in ("png", "pdf")
        ],
        grid=[
            report(
                f"{PLOT_STEMS[-1]}.{fmt}",
                category="Learning curves",
                subcategory="all envs (Figure 4)",
                caption="../report/curves.rst",
            )
            for fmt in ("png", "pdf")
        ],
    log:
        f"{RESULTS}/logs/plots.log",
    benchmark:
        f"{RESULTS}/benchmarks/plots.tsv"
    params:
        envs=ENVS,
        stems=PLOT_STEMS,
        confidence=config["analysis"]["confidence"],
    script:
        "../scripts/plots.py"
