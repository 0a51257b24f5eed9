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


# The paper's claims (the grid's `claims`), decided over seeds by trpo_bench.claims: verdicts,
# every comparison behind them, the IQM of normalised scores and a performance profile.
rule claims:
    input:
        runs=TABLES["runs"],
        comparison=TABLES["comparison"],
        reference=REFERENCE,
    output:
        markdown=report(CLAIMS["markdown"], category="Claims", caption="../report/claims.rst"),
        verdicts=CLAIMS["verdicts"],
        comparisons=CLAIMS["comparisons"],
        iqm=CLAIMS["iqm"],
        profile=[
            report(
                f"{CLAIMS['profile']}.{fmt}", category="Claims", caption="../report/claims.rst"
            )
            for fmt in ("png", "pdf")
        ],
    log:
        f"{RESULTS}/logs/claims.log",
    benchmark:
        f"{RESULTS}/benchmarks/claims.tsv"
    params:
        claims=config.get("claims", []),
        envs=ENVS,
        methods=list(dict.fromkeys(r.method for r in RUNS)),
        analysis=config["analysis"],
        profile_stem=CLAIMS["profile"],
        title=f"The paper's claims: {config['experiment']}",
    script:
        "../scripts/claims.py"


# The committed report of a real run (a grid with `reproduction: <folder>`, config/claims.yaml):
# README.md claim by claim, with the tables and PNG figures beside it.
rule reproduction:
    input:
        claims=list(CLAIMS.values())[:-1],
        profile=f"{CLAIMS['profile']}.png",
        tables=list(TABLES.values()),
        plots=PLOTS,
    output:
        page=f"{config.get('reproduction', 'docs/reproduction')}/README.md",
    log:
        f"{RESULTS}/logs/reproduction.log",
    params:
        results=RESULTS,
        envs=ENVS,
        grid_file=config.get("reproduction_grid", "config/claims.yaml"),
        command="snakemake --cores all --configfile config/claims.yaml",
    script:
        "../scripts/reproduction.py"
