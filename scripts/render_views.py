"""Rule render_views: slice pictures of a few validation pairs."""
from equivox.logs import run_logged
from equivox.render_views import render_view_pairs

if "snakemake" in globals():
    run_logged(render_view_pairs, snakemake.log[0], views_path=snakemake.input.views,
               png_path=snakemake.output.png, svg_path=snakemake.output.svg,
               n_examples=snakemake.params.n_examples)
