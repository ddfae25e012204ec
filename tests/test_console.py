"""What a workflow run shows on the console: rule scripts log equivox's INFO lines but
third-party libraries only from WARNING."""
import logging

from equivox.logs import run_logged


def _figure_as_pdf(path):
    """A matplotlib PDF with embedded TrueType fonts, as the paper figures have: fontTools
    subsets them and logs every subset at INFO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig, ax = plt.subplots()
        ax.set_title("validation accuracy")
        fig.savefig(path)
        plt.close(fig)
    logging.getLogger("equivox.test").info("figure written")
    logging.getLogger("fontTools.subset").warning("a third-party warning")


def test_third_party_info_lines_stay_out_of_the_log(tmp_path, capsys):
    log_path = tmp_path / "plot.log"
    run_logged(_figure_as_pdf, log_path, path=tmp_path / "figure.pdf")
    text = log_path.read_text()
    assert "INFO equivox.test: figure written" in text
    assert "WARNING fontTools.subset: a third-party warning" in text
    assert "INFO fontTools" not in text and "INFO fontTools" not in capsys.readouterr().err
