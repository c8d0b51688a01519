"""One fact in one place: conda.yaml's pip list equals setup.cfg's install_requires; the CLI starts light."""

import configparser
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options"]["install_requires"].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_conda_env_lists_the_same_dependencies_as_setup_cfg():
    env = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(_requirements()) <= set(pip)
    assert set(pip) - set(_requirements()) == {"tinysoundfont==0.3.7"}  # installed with --no-deps by make


def test_mlproject_entry_point_runs_the_cli():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    assert "benchmark.cli run" in project["entry_points"]["main"]["command"]
    assert project["python_env"] == "python_env.yaml"  # the bare `mlflow run .` (virtualenv); conda.yaml: documented
    env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert env["python"].count(".") == 2 and "-e ." in env["dependencies"]  # an exact Python: pyenv has it offline


def test_importing_the_packages_and_listing_encoders_imports_no_model():
    code = (
        "import sys, encoders, metrics, benchmark.cli; from encoders import registry; "
        "registry.describe_all(); from metrics import registry as m; m.select('auto'); "
        "heavy = [n for n in ('torch', 'laion_clap', 'muq', 'music2latent', 'audiobox_aesthetics', 'mlflow') "
        "if n in sys.modules]; print(heavy); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
