"""procs.argv: the child processes' command lines and environment (no bpy: the commands are built, not run)."""

from __future__ import annotations

import sys

from blender_instseg.procs.argv import (checkout_generate_script, child_env, core_argv, generator_argv,
                                        generator_bootstrap, ml_argv, package_dir, pipeline_argv)


def test_child_env_and_module_commands() -> None:
    assert child_env(env={})["PYTHONPATH"].split(":")[0] == str(package_dir().parent)


def test_child_env_does_not_pass_this_pythons_paths_to_another_python() -> None:
    """The Python with torch is often another version than Blender's: a PYTHONPATH meant for this one
    would hand it numpy built for another ABI, so the parent's PYTHONPATH/PYTHONHOME stay behind."""
    env = child_env(["/extra/site"], env={"PYTHONPATH": "/blender/site-packages", "PYTHONHOME": "/blender",
                                          "HOME": "/home/artist"})
    assert env["PYTHONPATH"].split(":") == [str(package_dir().parent), "/extra/site"]
    assert "PYTHONHOME" not in env and env["HOME"] == "/home/artist" and env["PYTHONUNBUFFERED"] == "1"
    leaf = package_dir().name
    assert ml_argv("py", "train", ["--steps", 3]) == ["py", "-u", "-m", f"{leaf}.ml", "train", "--steps", "3"]
    assert core_argv("py", "evaluate", ["--gt", "g"]) == ["py", "-u", "-m", f"{leaf}.core", "evaluate", "--gt", "g"]
    assert pipeline_argv("py", "loop", ["--run", "r"]) == ["py", "-u", "-m", f"{leaf}.pipeline", "loop", "--run", "r"]


def test_generator_with_the_checkout_script() -> None:
    script = checkout_generate_script()
    assert script is not None and script.name == "generate.py"  # this is a checkout
    py = generator_argv("/usr/bin/python3", ["--out", "x"], script=script)
    assert py[:2] == ["/usr/bin/python3", "-u"] and py[-3:] == ["--", "--out", "x"]
    assert py[2] == str(script)
    bl = generator_argv("/opt/blender-5.0/blender", ["--out", "x"], script=script)
    assert bl[1:5] == ["-b", "--factory-startup", "--python-exit-code", "1"] and bl[-3:] == ["--", "--out", "x"]
    assert bl[5:7] == ["-P", str(script)]


def test_generator_with_the_bootstrap() -> None:
    py = generator_argv(sys.executable, ["--seed", "3"], extra_path=["/somewhere"])
    assert py[:3] == [sys.executable, "-u", "-c"] and py[-3:] == ["--", "--seed", "3"]
    assert py[3] == generator_bootstrap(extra_path=["/somewhere"])
    bl = generator_argv("/opt/Blender", ["--seed", "3"], package="bl_ext.user_default.blender_instseg",
                        factory_startup=False)
    assert bl[:4] == ["/opt/Blender", "-b", "--python-exit-code", "1"] and bl[4] == "--python-expr"
    assert bl[-3:] == ["--", "--seed", "3"]
    boot = bl[5]
    # the add-on's real name first, then the folder's own name from its parent folder
    assert boot.index("bl_ext.user_default.blender_instseg.blender.generate") < boot.index(
        f"'{package_dir().name}.blender.generate'")
    assert repr(str(package_dir().parent)) in boot
    compile(boot, "<bootstrap>", "exec")
    compile(py[3], "<bootstrap>", "exec")
