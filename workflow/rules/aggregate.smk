# Tables (CSV + Markdown + HTML, published numbers beside ours), learning-curve plots (PNG +
# PDF), the claims, and the overview page that opens `snakemake --report report.html` with the
# answer. Report categories are numbered: the report lists them alphabetically.

ANSWER = "1. The answer"
CURVES = "2. Learning curves"
CLAIMS_DETAIL = "3. Claims in detail"
FILES = "4. Tables as files"
OVERVIEW = f"{RESULTS}/overview.html"
COMPARISON_HTML = f"{RESULTS}/tables/comparison.html"
CLAIMS_HTML = f"{RESULTS}/tables/claims.html"


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
            category=FILES,
            caption="../report/comparison.rst",
            labels={"table": "comparison", "format": "csv"},
        ),
        markdown=report(
            TABLES["markdown"],
            category=FILES,
            caption="../report/comparison.rst",
            labels={"table": "comparison", "format": "md"},
        ),
        html=report(
            COMPARISON_HTML,
            category=ANSWER,
            caption="../report/comparison.rst",
            labels={"page": "2. comparison table"},
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
        reference=REFERENCE,
    output:
        envs=[
            report(
                f"{stem}.{fmt}",
                category=CURVES,
                subcategory="per env, every method",
                caption="../report/curves.rst",
                labels={"env": env, "format": fmt},
            )
            for env, stem in zip(ENVS, PLOT_STEMS[:-1])
            for fmt in ("png", "pdf")
        ],
        grid=[
            report(
                f"{PLOT_STEMS[-1]}.{fmt}",
                category=CURVES,
                subcategory="Figure 4 (the paper's layout)",
                caption="../report/figure4.rst",
                labels={"figure": "figure4", "format": fmt},
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


# The paper's claims (the grid's `claims`), decided over seeds by trpo_bench.analysis.claims: verdicts,
# every comparison behind them, the IQM of normalised scores and a performance profile.
rule claims:
    input:
        runs=TABLES["runs"],
        comparison=TABLES["comparison"],
        reference=REFERENCE,
    output:
        markdown=report(
            CLAIMS["markdown"],
            category=CLAIMS_DETAIL,
            caption="../report/claims.rst",
            labels={"item": "claims and every comparison (Markdown)", "format": "md"},
        ),
        html=report(
            CLAIMS_HTML,
            category=ANSWER,
            caption="../report/claims.rst",
            labels={"page": "3. claims and verdicts"},
        ),
        verdicts=CLAIMS["verdicts"],
        comparisons=CLAIMS["comparisons"],
        iqm=CLAIMS["iqm"],
        profile=[
            report(
                f"{CLAIMS['profile']}.{fmt}",
                category=CLAIMS_DETAIL,
                caption="../report/claims.rst",
                labels={"item": "performance profile", "format": fmt},
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


# The page that opens the report (workflow/report/workflow.rst includes it inline): the claims
# and their verdicts, the budget as a share of the paper's, the comparison, the paper-style
# figure.
rule overview:
    input:
        runs=TABLES["runs"],
        comparison=TABLES["comparison"],
        verdicts=CLAIMS["verdicts"],
        figure=f"{PLOT_STEMS[-1]}.png",
    output:
        report(
            OVERVIEW,
            category=ANSWER,
            caption="../report/overview.rst",
            labels={"page": "1. overview"},
        ),
    log:
        f"{RESULTS}/logs/overview.log",
    benchmark:
        f"{RESULTS}/benchmarks/overview.tsv"
    params:
        envs=ENVS,
        analysis=config["analysis"],
        title=f"trpo-bench: {config['experiment']}",
    script:
        "../scripts/overview.py"


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
