import pytest

from rastos.errors import ConfigError
from rastos.sched.config import build_scheduler, list_policies, load_policy
from rastos.sched.plugins.producers import ApproxPrefixCacheProducer


def test_every_builtin_policy_builds():
    for name in list_policies():
        s = load_policy(name)
        assert s.profiles and s.handler is not None


def test_defaults_are_injected():
    s = build_scheduler(
        {
            "plugins": [{"type": "prefix-cache-scorer"}],
            "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "prefix-cache-scorer"}]}],
        }
    )
    assert isinstance(s.prefix_producer(), ApproxPrefixCacheProducer)  # the producer the scorer reads
    assert s.profiles["p"].picker.type_name == "max-score-picker"
    assert s.handler.type_name == "single-profile-handler"
    assert s.block_tokens == 64


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"schedulingProfiles": []}, "schedulingProfiles: List should have at least 1 item"),
        ({"plugins": [{"type": "nope"}], "schedulingProfiles": [{"name": "p"}]}, r"plugins\[0\]\.type: unknown plugin type 'nope'"),
        ({"plugins": [{"type": "queue-scorer", "parameters": {"stalenessThresholdMs": -1}}],
          "schedulingProfiles": [{"name": "p"}]}, r"plugins\[0\]\.parameters\.stalenessThresholdMs"),
        ({"plugins": [{"type": "queue-scorer", "parameters": {"typo": 1}}], "schedulingProfiles": [{"name": "p"}]},
         r"plugins\[0\]\.parameters\.typo: Extra inputs are not permitted"),
        ({"plugins": [{"type": "queue-scorer"}, {"type": "queue-scorer"}], "schedulingProfiles": [{"name": "p"}]},
         r"plugins\[1\]\.name: plugin name 'queue-scorer' is used twice"),
        ({"schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "ghost"}]}]},
         r"schedulingProfiles\[0\]\.plugins\[0\]\.pluginRef: no plugin named 'ghost'"),
        ({"plugins": [{"type": "random-picker"}, {"type": "max-score-picker"}],
          "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "random-picker"}, {"pluginRef": "max-score-picker"}]}]},
         "has two pickers"),
        ({"plugins": [{"type": "approx-prefix-cache-producer"}],
          "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "approx-prefix-cache-producer"}]}]},
         "a profile takes filters, scorers and one picker"),
        ({"schedulingProfiles": [{"name": "a"}, {"name": "b"}]}, "need a profile handler"),
        ({"plugins": [{"type": "queue-scorer"}], "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "queue-scorer", "weight": -2}]}]},
         r"schedulingProfiles\[0\]\.plugins\[0\]\.weight"),
        ({"plugins": [{"type": "role-filter", "parameters": {"roles": ["x"]}}], "schedulingProfiles": [{"name": "p"}]},
         r"plugins\[0\]\.parameters: unknown roles"),
    ],
)  # fmt: skip
def test_errors_name_the_field(config, message):
    with pytest.raises(ConfigError, match=message):
        build_scheduler(config)


def test_policy_from_file_and_unknown_name(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("scheduler:\n  plugins: [{type: least-request-picker}]\n  schedulingProfiles:\n"
                 "    - {name: x, plugins: [{pluginRef: least-request-picker}]}\n")  # fmt: skip
    s = load_policy(str(f))
    assert s.name == "mine" and s.profiles["x"].picker.type_name == "least-request-picker"
    with pytest.raises(ConfigError, match="built-in policies: default"):
        load_policy("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedulingProfiles: [{name: x, plugins: [{pluginRef: y}]}]\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_policy(str(bad))


def test_each_load_gives_fresh_plugin_state():
    a, b = load_policy("default"), load_policy("default")
    assert a.prefix_producer() is not b.prefix_producer()
