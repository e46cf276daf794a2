"""The builder registry: entry points, explicit registration, errors, broken plugins.

The registry is module-global state. Every test that changes it uses the
``isolated_registry`` fixture, which restores the explicit registrations, takes any
throwaway distribution off ``sys.path``, forgets imported throwaway modules and calls
``lattice.registry.refresh()``.
"""

import importlib
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import uuid
import warnings

import numpy as np
import pytest

import lattice
from lattice import registry

# --------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------


@pytest.fixture
def isolated_registry(monkeypatch):
    saved = dict(registry._explicit)
    modules_before = set(sys.modules)
    registry.refresh()
    yield monkeypatch
    monkeypatch.undo()  # sys.path back first, so rediscovery cannot see throwaways
    registry._explicit.clear()
    registry._explicit.update(saved)
    for name in set(sys.modules) - modules_before:
        if name.startswith("lattice_throwaway_"):
            del sys.modules[name]
    importlib.invalidate_caches()
    registry.refresh()


def unique(prefix="lattice_throwaway_"):
    return prefix + uuid.uuid4().hex[:12]


def make_distribution(root, dist_name, entries, modules=None):
    """Write a minimal installed distribution (a .dist-info folder) under ``root``.

    ``entries`` maps graph name -> "module:attr" in the group lattice.graphs;
    ``modules`` maps module name -> source, written next to it.
    """
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist_name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n"
    )
    lines = ["[lattice.graphs]"] + [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, source in (modules or {}).items():
        (root / f"{mod}.py").write_text(source)
    return root


def install(monkeypatch, root):
    monkeypatch.syspath_prepend(str(root))  # also invalidates import caches
    registry.refresh()


def one_state_builder(label_offset=0):
    def builder(target, **options):
        b = lattice.GraphBuilder()
        s = b.add_state(int(target[0]) + label_offset, start=0.0, final=0.0)
        b.add_arc(s, s)
        return b.build()

    return builder


GOOD_PLUGIN = """
import lattice

LOADED = True

def build_it(target, scale=1):
    b = lattice.GraphBuilder()
    prev = None
    for i, c in enumerate(target):
        s = b.add_state(int(c) * scale, start=0.0 if i == 0 else None,
                        final=0.0 if i == len(target) - 1 else None)
        b.add_arc(s, s)
        if prev is not None:
            b.add_arc(prev, s)
        prev = s
    return b.build()
"""


# --------------------------------------------------------------------------------
# built-in plugins through entry points
# --------------------------------------------------------------------------------


def test_builtins_available_through_entry_points():
    names = lattice.available_graphs()
    assert isinstance(names, list)
    assert names == sorted(names)
    assert {"ctc", "segmentation"} <= set(names)
    # they come from the installed distribution's entry points, not from @register
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="lattice.graphs")}
    assert eps["ctc"] == "lattice_plugins.ctc:ctc"
    assert eps["segmentation"] == "lattice_plugins.segmentation:segmentation"
    view = registry.registered()
    assert view["ctc"] == "lattice_plugins.ctc:ctc"
    assert view["segmentation"] == "lattice_plugins.segmentation:segmentation"
    assert "ctc" not in registry._explicit and "segmentation" not in registry._explicit


def test_registered_is_read_only():
    view = registry.registered()
    with pytest.raises(TypeError):
        view["ctc"] = "explicit"


def test_build_dispatches_to_builder():
    from lattice_plugins.ctc import ctc
    from lattice_plugins.segmentation import segmentation

    assert registry.get_builder("ctc") is ctc
    assert registry.get_builder("segmentation") is segmentation
    assert lattice.build("ctc", [1, 2], blank=3) == ctc([1, 2], blank=3)
    assert lattice.build("segmentation", [1, 2], min_frames=2) == segmentation(
        [1, 2], min_frames=2
    )
    # options really are passed through
    assert lattice.build("ctc", [1], blank=4).labels.tolist() == [4, 1, 4]


def test_builder_exceptions_propagate_unchanged():
    with pytest.raises(ValueError, match="blank") as info:
        lattice.build("ctc", [0])
    assert not isinstance(info.value, ImportError)


def test_refresh_keeps_builtins():
    registry.refresh()
    assert {"ctc", "segmentation"} <= set(lattice.available_graphs())
    assert lattice.build("ctc", [1]).num_states == 3


# --------------------------------------------------------------------------------
# unknown names
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [lattice.UnknownGraphError, ValueError, LookupError])
def test_unknown_name(exc):
    with pytest.raises(exc, match="no_such_graph") as info:
        lattice.build("no_such_graph", [1, 2])
    message = str(info.value)
    for name in lattice.available_graphs():
        assert name in message
    assert "ctc" in message and "segmentation" in message


def test_unknown_name_get_builder():
    with pytest.raises(lattice.UnknownGraphError, match="ctc"):
        registry.get_builder("CTC")
    assert issubclass(lattice.UnknownGraphError, ValueError)
    assert issubclass(lattice.UnknownGraphError, LookupError)
    assert lattice.registry.UnknownGraphError is lattice.UnknownGraphError


# --------------------------------------------------------------------------------
# explicit registration
# --------------------------------------------------------------------------------


def test_register_as_decorator(isolated_registry):
    name = unique("test_deco_")
    assert name not in lattice.available_graphs()

    @lattice.register(name)
    def builder(target, offset=0):
        return one_state_builder(offset)(target)

    assert callable(builder) and builder.__name__ == "builder"  # returned unchanged
    assert name in lattice.available_graphs()
    assert registry.registered()[name] == "explicit"
    assert registry.get_builder(name) is builder
    g = lattice.build(name, [3], offset=2)
    assert g.labels.tolist() == [5]


def test_register_as_function(isolated_registry):
    name = unique("test_func_")
    func = one_state_builder()
    assert lattice.register(name, func) is func
    assert registry.get_builder(name) is func
    assert lattice.build(name, [4]).labels.tolist() == [4]


def test_register_same_name_twice_warns_and_replaces(isolated_registry):
    name = unique("test_twice_")
    first, second = one_state_builder(0), one_state_builder(1)
    lattice.register(name, first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lattice.register(name, first)  # same builder again: silent
    with pytest.warns(RuntimeWarning, match=name):
        lattice.register(name, second)
    assert lattice.build(name, [2]).labels.tolist() == [3]


@pytest.mark.parametrize("name", ["ctc", "segmentation"])
def test_explicit_registration_shadows_entry_point(isolated_registry, name):
    lattice.build(name, [1, 2])  # plugin loaded before the override
    fake = one_state_builder(10)
    with pytest.warns(RuntimeWarning, match=name):
        lattice.register(name, fake)
    assert registry.get_builder(name) is fake
    assert lattice.build(name, [1, 2]).labels.tolist() == [11]
    assert registry.registered()[name] == "explicit"
    assert lattice.available_graphs().count(name) == 1
    # refresh forgets entry points, not explicit registrations
    registry.refresh()
    assert registry.get_builder(name) is fake


def test_override_is_undone_by_fixture():
    """Runs after the override tests: the built-in plugins are back."""
    from lattice_plugins.ctc import ctc

    assert registry.get_builder("ctc") is ctc
    assert registry.registered()["ctc"] == "lattice_plugins.ctc:ctc"


@pytest.mark.parametrize("name", ["", None, 3, b"ctc"])
def test_register_bad_name(isolated_registry, name):
    with pytest.raises(TypeError, match="name"):
        lattice.register(name, one_state_builder())


def test_register_non_callable(isolated_registry):
    name = unique("test_noncallable_")
    with pytest.raises(TypeError, match="callable"):
        lattice.register(name, 42)
    with pytest.raises(TypeError, match="callable"):
        lattice.register(name)("not a function")
    assert name not in lattice.available_graphs()


@pytest.mark.parametrize("returned", [None, [1, 2, 3], np.zeros(3), "graph"])
def test_builder_returning_non_graph(isolated_registry, returned):
    name = unique("test_bad_return_")
    lattice.register(name, lambda target: returned)
    with pytest.raises(TypeError, match=name) as info:
        lattice.build(name, [1])
    assert type(returned).__name__ in str(info.value)
    assert "Graph" in str(info.value)


def test_builder_returning_graph_batch_is_rejected(isolated_registry):
    name = unique("test_batch_return_")
    lattice.register(name, lambda target: lattice.batch([lattice.build("ctc", target)]))
    with pytest.raises(TypeError, match="GraphBatch"):
        lattice.build(name, [1])


# --------------------------------------------------------------------------------
# third-party plugins: real throwaway distributions on sys.path
# --------------------------------------------------------------------------------


def test_broken_plugin(isolated_registry, tmp_path):
    missing = unique()
    root = make_distribution(tmp_path / "site", unique("foo_"), {"broken": f"{missing}:func"})
    install(isolated_registry, root)
    assert "broken" in lattice.available_graphs()
    assert registry.registered()["broken"] == f"{missing}:func"
    with pytest.raises(ImportError, match="broken") as info:
        with pytest.warns(RuntimeWarning, match="broken") as record:
            lattice.build("broken", [1, 2])
    assert missing in str(info.value)
    assert missing in str(record[0].message)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    # a second attempt fails the same way (nothing half-loaded is cached)
    with pytest.raises(ImportError, match="broken"):
        with pytest.warns(RuntimeWarning, match="broken"):
            registry.get_builder("broken")
    # everything else still works
    assert {"ctc", "segmentation"} <= set(lattice.available_graphs())
    assert lattice.build("ctc", [1, 2]).num_states == 5
    assert lattice.build("segmentation", [1, 2]).num_states == 2


def test_plugin_failing_at_import(isolated_registry, tmp_path):
    mod = unique()
    root = make_distribution(
        tmp_path / "site",
        unique("bar_"),
        {"explodes": f"{mod}:build_it", "no_attr": f"{mod}:missing_attr"},
        {mod: "raise RuntimeError('boom at import')\n"},
    )
    install(isolated_registry, root)
    with pytest.raises(ImportError, match="explodes") as info:
        with pytest.warns(RuntimeWarning, match="boom at import"):
            lattice.build("explodes", [1])
    assert "boom at import" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ImportError, match="no_attr"):
        with pytest.warns(RuntimeWarning, match="no_attr"):
            lattice.build("no_attr", [1])
    assert lattice.build("ctc", [3]).labels.tolist() == [0, 3, 0]


def test_plugin_with_missing_attribute(isolated_registry, tmp_path):
    mod = unique()
    root = make_distribution(
        tmp_path / "site", unique("baz_"), {"no_attr": f"{mod}:nope"}, {mod: "X = 1\n"}
    )
    install(isolated_registry, root)
    with pytest.raises(ImportError, match="no_attr"):
        with pytest.warns(RuntimeWarning, match="no_attr"):
            lattice.build("no_attr", [1])


def test_working_plugin_found_lazily(isolated_registry, tmp_path):
    mod = unique()
    name = unique("good_graph_")
    root = make_distribution(
        tmp_path / "site", unique("good_"), {name: f"{mod}:build_it"}, {mod: GOOD_PLUGIN}
    )
    assert name not in lattice.available_graphs()
    install(isolated_registry, root)
    assert name in lattice.available_graphs()
    assert registry.registered()[name] == f"{mod}:build_it"
    assert mod not in sys.modules  # discovered, not imported
    g = lattice.build(name, [1, 2, 3], scale=2)
    assert mod in sys.modules
    assert registry.get_builder(name) is sys.modules[mod].build_it
    assert g.labels.tolist() == [2, 4, 6]
    assert g.num_arcs == 5
    # and the engine runs on it: 3 symbols over 4 frames, C(3, 2) = 3 paths
    score = lattice.forward(np.zeros((1, 4, 7)), [g])[0]
    assert score == pytest.approx(np.log(3))


def test_refresh_after_uninstall(isolated_registry, tmp_path):
    mod = unique()
    name = unique("gone_graph_")
    root = make_distribution(
        tmp_path / "site", unique("gone_"), {name: f"{mod}:build_it"}, {mod: GOOD_PLUGIN}
    )
    install(isolated_registry, root)
    assert lattice.build(name, [1]).num_states == 1
    sys.path.remove(str(root))
    importlib.invalidate_caches()
    # cached until refresh
    assert name in lattice.available_graphs()
    registry.refresh()
    assert name not in lattice.available_graphs()
    with pytest.raises(lattice.UnknownGraphError):
        lattice.build(name, [1])


def test_two_plugins_same_name_warn(isolated_registry, tmp_path):
    mod_a, mod_b = unique(), unique()
    name = unique("dup_graph_")
    root_a = make_distribution(
        tmp_path / "a", unique("dupa_"), {name: f"{mod_a}:build_it"}, {mod_a: GOOD_PLUGIN}
    )
    root_b = make_distribution(
        tmp_path / "b", unique("dupb_"), {name: f"{mod_b}:build_it"}, {mod_b: GOOD_PLUGIN}
    )
    isolated_registry.syspath_prepend(str(root_a))
    isolated_registry.syspath_prepend(str(root_b))  # root_b is now first on sys.path
    registry.refresh()
    with pytest.warns(RuntimeWarning, match=name):
        names = lattice.available_graphs()
    assert names.count(name) == 1
    assert registry.registered()[name] == f"{mod_b}:build_it"
    lattice.build(name, [1])
    assert mod_b in sys.modules and mod_a not in sys.modules


def test_explicit_wins_over_third_party_plugin(isolated_registry, tmp_path):
    mod = unique()
    name = unique("shadowed_")
    root = make_distribution(
        tmp_path / "site", unique("shadow_"), {name: f"{mod}:build_it"}, {mod: GOOD_PLUGIN}
    )
    install(isolated_registry, root)
    fake = one_state_builder(5)
    with pytest.warns(RuntimeWarning, match=mod):
        lattice.register(name, fake)
    assert lattice.build(name, [1]).labels.tolist() == [6]
    assert mod not in sys.modules


def make_malformed_distribution(root, dist_name, graph_name):
    """A distribution whose entry_points.txt cannot be parsed (a line without '=')."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist_name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[lattice.graphs]\n{graph_name} = somewhere:func\nthis line is not an entry point\n"
    )
    return root


def test_unreadable_entry_points_are_skipped_with_a_warning(isolated_registry, tmp_path):
    dist = unique("malformed_")
    name = unique("never_listed_")
    root = make_malformed_distribution(tmp_path / "site", dist, name)
    install(isolated_registry, root)
    # (importlib.metadata.entry_points() itself raises on such a file in Python 3.11)
    with pytest.warns(RuntimeWarning, match=dist) as record:
        names = lattice.available_graphs()
    assert "entry points cannot be read" in str(record[0].message)
    assert name not in names
    assert {"ctc", "segmentation", "hmm", "star"} <= set(names)
    assert lattice.build("ctc", [1, 2]).num_states == 5
    # cached: no second warning until refresh
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lattice.available_graphs()


def test_shadowed_distribution_is_ignored(isolated_registry, tmp_path):
    """Two copies of one distribution on sys.path: only the first one counts."""
    mod = unique()
    dist = unique("twice_")
    name_a, name_b = unique("first_"), unique("second_")
    root_a = make_distribution(tmp_path / "a", dist, {name_a: f"{mod}:build_it"},
                               {mod: GOOD_PLUGIN})
    root_b = make_distribution(tmp_path / "b", dist, {name_b: f"{mod}:build_it"})
    isolated_registry.syspath_prepend(str(root_b))
    isolated_registry.syspath_prepend(str(root_a))  # root_a first
    registry.refresh()
    names = lattice.available_graphs()
    assert name_a in names and name_b not in names


SUBPROCESS_CHECK = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("always")
    import lattice
    # import lattice reads no entry point and imports no plugin
    assert lattice.registry._entry_points is None, "entry points read at import"
    plugins = [m for m in sys.modules if m.startswith("lattice_plugins.")
               or m.startswith("lattice_throwaway_")]
    assert not plugins, plugins
    with warnings.catch_warnings(record=True) as caught:
        names = lattice.available_graphs()
    print("DISCOVERY", [str(w.message) for w in caught])
    assert "broken_at_import" in names and "ctc" in names, names
    assert lattice.build("ctc", [1, 2]).num_states == 5
    assert lattice.build("hmm", [1, 2], states=2).num_states == 4
    try:
        lattice.build("broken_at_import", [1])
    except ImportError as exc:
        print("IMPORTERROR", exc)
    else:
        raise AssertionError("no ImportError")
    print("OK")
    """
)


def test_broken_third_party_plugins_cannot_break_import_lattice(tmp_path):
    """A fresh interpreter with a broken plugin and an unreadable distribution installed."""
    site = tmp_path / "site"
    mod = unique()
    dist = unique("brokenplugin_")
    make_distribution(site, dist, {"broken_at_import": f"{mod}:build_it"},
                      {mod: "raise RuntimeError('plugin exploded at import')\n"})
    bad_dist = unique("unreadable_")
    make_malformed_distribution(site, bad_dist, "whatever")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    out = subprocess.run([sys.executable, "-c", SUBPROCESS_CHECK], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout
    discovery = next(line for line in out.stdout.splitlines() if line.startswith("DISCOVERY"))
    assert bad_dist in discovery  # the unreadable distribution is named
    error = next(line for line in out.stdout.splitlines() if line.startswith("IMPORTERROR"))
    assert "broken_at_import" in error and "plugin exploded at import" in error
    # the failed import also warned, naming the graph
    assert "broken_at_import" in out.stderr and "RuntimeWarning" in out.stderr


def test_build_batch_checks_what_a_plugin_returns(isolated_registry):
    def one_state(target):
        return lattice.Graph([target[0]], [0], [0], None, [0.0], [0.0])

    one_state.build_batch = lambda targets: [one_state(t) for t in targets]
    lattice.register("one_state_listy", one_state)
    assert lattice.build("one_state_listy", [3]).labels.tolist() == [3]
    with pytest.raises(TypeError, match="build_batch returned list"):
        lattice.build_batch("one_state_listy", [[3]])
