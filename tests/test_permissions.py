"""Topic permissions as pure rules: compiling them, and who may do what where."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from jupyter_server.auth import User

from jupyter_channels.connection import ChannelUser, groups_of, is_admin
from jupyter_channels.hub.permissions import Action, Permissions, RuleError

JOIN, SEND, MODERATE = Action.JOIN, Action.SEND, Action.MODERATE

#: The example of the configuration docs.
CLASSROOM = [
    {"topic": "announce:*", "join": "*", "send": "@teachers"},
    {"topic": "group:{group}:*", "join": "@{group}", "send": "@{group}"},
    {"topic": "user:{user}:*", "join": "{user}", "send": "*"},
    {"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"},
]


@dataclass
class Person:
    username: str
    groups: tuple[str, ...] = ()
    name: str = ""
    display_name: str = ""
    initials: str | None = None
    color: str | None = None


ADA = Person("ada", ("students", "red"))
GRACE = Person("grace", ("teachers",))
ALAN = Person("alan")


def allowed(rules, who, action, topic) -> bool:
    return Permissions(rules).decide(who, action, topic).allowed


# -- no rules --------------------------------------------------------------------------------------


def test_no_rules_allow_everyone_everything():
    permissions = Permissions(None)
    for action in Action:
        decision = permissions.decide(ALAN, action, "anything:at:all")
        assert decision.allowed
        assert decision.rule is None


def test_an_empty_list_of_rules_refuses_everything():
    decision = Permissions([]).decide(GRACE, JOIN, "chat:lobby")
    assert not decision.allowed
    assert decision.refusal(JOIN, "chat:lobby") == (
        "not allowed to join 'chat:lobby' (no rule matches it)"
    )


# -- principals ------------------------------------------------------------------------------------


def test_star_admits_any_identity():
    assert allowed(CLASSROOM, ALAN, JOIN, "announce:class")


def test_a_group_admits_its_members_only():
    assert allowed(CLASSROOM, GRACE, SEND, "announce:class")
    assert not allowed(CLASSROOM, ADA, SEND, "announce:class")
    assert not allowed(CLASSROOM, ALAN, SEND, "announce:class")


def test_a_username_admits_that_user_only():
    rules = [{"topic": "office:*", "join": "grace", "send": "grace"}]
    assert allowed(rules, GRACE, JOIN, "office:hours")
    assert not allowed(rules, ADA, JOIN, "office:hours")


def test_a_list_admits_anyone_it_names():
    rules = [{"topic": "lab:*", "join": ["alan", "@teachers"]}]
    assert allowed(rules, ALAN, JOIN, "lab:1")
    assert allowed(rules, GRACE, JOIN, "lab:1")
    assert not allowed(rules, ADA, JOIN, "lab:1")


def test_an_empty_list_admits_nobody():
    assert not allowed([{"topic": "*", "join": []}], GRACE, JOIN, "x")


def test_an_action_a_rule_does_not_name_is_allowed_to_nobody():
    rules = [{"topic": "news:*", "join": "*"}]
    assert allowed(rules, GRACE, JOIN, "news:today")
    assert not allowed(rules, GRACE, SEND, "news:today")
    assert not allowed(rules, GRACE, MODERATE, "news:today")


def test_moderate_is_decided_like_the_other_actions():
    assert allowed(CLASSROOM, GRACE, MODERATE, "chat:lobby")
    assert not allowed(CLASSROOM, ADA, MODERATE, "chat:lobby")


# -- placeholders ----------------------------------------------------------------------------------


def test_user_binds_the_segment_it_matches():
    assert allowed(CLASSROOM, ADA, JOIN, "user:ada:inbox")
    assert not allowed(CLASSROOM, ALAN, JOIN, "user:ada:inbox")
    # Anyone may drop a note in someone's inbox.
    assert allowed(CLASSROOM, ALAN, SEND, "user:ada:inbox")


def test_group_binds_the_segment_it_matches():
    assert allowed(CLASSROOM, ADA, JOIN, "group:red:chat")
    assert allowed(CLASSROOM, ADA, SEND, "group:red:chat")
    assert not allowed(CLASSROOM, ADA, JOIN, "group:blue:chat")
    assert not allowed(CLASSROOM, GRACE, JOIN, "group:red:chat")


def test_a_placeholder_never_matches_across_a_colon():
    rules = [{"topic": "user:{user}", "join": "{user}"}]
    assert allowed(rules, ADA, JOIN, "user:ada")
    # "ada:x" is not one segment: the rule does not match, and nothing else does.
    decision = Permissions(rules).decide(Person("ada:x"), JOIN, "user:ada:x")
    assert not decision.allowed
    assert decision.rule is None


def test_a_placeholder_may_sit_inside_a_segment():
    rules = [{"topic": "inbox-{user}", "join": "{user}"}]
    assert allowed(rules, ADA, JOIN, "inbox-ada")
    assert not allowed(rules, ALAN, JOIN, "inbox-ada")


# -- patterns and order ----------------------------------------------------------------------------


def test_the_first_matching_rule_decides_even_when_a_later_one_would_allow():
    rules = [
        {"topic": "chat:quiet", "join": "*"},
        {"topic": "chat:*", "join": "*", "send": "*"},
    ]
    decision = Permissions(rules).decide(ADA, SEND, "chat:quiet")
    assert not decision.allowed
    assert decision.rule is not None
    assert decision.rule.number == 1
    assert allowed(rules, ADA, SEND, "chat:lobby")


def test_a_topic_no_rule_matches_is_refused():
    rules = [{"topic": "chat:*", "join": "*", "send": "*"}]
    assert not allowed(rules, GRACE, JOIN, "other:topic")


def test_an_exact_pattern_matches_that_topic_only():
    rules = [{"topic": "chat:lobby", "join": "*"}]
    assert allowed(rules, ADA, JOIN, "chat:lobby")
    assert not allowed(rules, ADA, JOIN, "chat:lobby2")


def test_a_star_suffix_matches_the_prefix_itself_and_anything_after_it():
    rules = [{"topic": "chat:*", "join": "*"}]
    for topic in ("chat:", "chat:lobby", "chat:a:b/c"):
        assert allowed(rules, ADA, JOIN, topic)
    assert not allowed(rules, ADA, JOIN, "chatter")


def test_pattern_characters_are_literal_not_regular_expressions():
    rules = [{"topic": "a.b:*", "join": "*"}]
    assert allowed(rules, ADA, JOIN, "a.b:x")
    assert not allowed(rules, ADA, JOIN, "aXb:x")


# -- refusals --------------------------------------------------------------------------------------


def test_a_refusal_names_the_rule_and_what_it_allows():
    refusal = Permissions(CLASSROOM).refusal(ADA, SEND, "announce:class")
    assert refusal == (
        "not allowed to send to 'announce:class' (rule 1: topic 'announce:*', send '@teachers')"
    )


def test_a_refusal_of_an_action_the_rule_leaves_out_says_nobody():
    refusal = Permissions(CLASSROOM).refusal(ADA, MODERATE, "chat:x")
    assert refusal is not None
    assert refusal.endswith("(rule 4: topic '*', moderate '@teachers')")
    refusal = Permissions(CLASSROOM).refusal(GRACE, MODERATE, "announce:x")
    assert (
        refusal
        == "not allowed to moderate on 'announce:x' (rule 1: topic 'announce:*', moderate nobody)"
    )


def test_an_allowed_action_has_no_refusal():
    assert Permissions(CLASSROOM).refusal(GRACE, SEND, "announce:class") is None


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"topic": "*"}, "must be a list of rules"),
        ("*", "must be a list of rules"),
        (["*"], "rule 1: must be a dict with 'topic'"),
        ([{"join": "*"}], "rule 1 ({'join': '*'}): 'topic' must be a string pattern"),
        (
            [{"topic": "*"}, {"topic": "a", "sned": "*"}],
            "rule 2 ({'topic': 'a', 'sned': '*'}): unknown key(s) 'sned'",
        ),
        ([{"topic": "a*b"}], "rule 1 (topic 'a*b'): a topic, optionally ending in '*'"),
        ([{"topic": "a:**"}], "rule 1 (topic 'a:**')"),
        ([{"topic": ""}], "rule 1 (topic '')"),
        ([{"topic": "bad topic"}], "rule 1 (topic 'bad topic')"),
        ([{"topic": "a:{who}"}], "unknown placeholder {who}"),
        ([{"topic": "{user}:{user}"}], "{user} appears twice"),
        ([{"topic": "a:*", "join": "{user}"}], "'{user}' needs its placeholder"),
        ([{"topic": "{user}:*", "join": "@{group}"}], "'@{group}' needs its placeholder"),
        ([{"topic": "{group}:*", "join": "{group}"}], "'{group}' needs its placeholder"),
        ([{"topic": "a", "send": ""}], "rule 1 (topic 'a'), 'send': empty principal"),
        ([{"topic": "a", "join": "@"}], "empty principal"),
        ([{"topic": "a", "join": 3}], "a principal or a list of principals, not 3"),
        ([{"topic": "a", "join": ["ada", 3]}], "a principal or a list of principals"),
    ],
)
def test_a_bad_rule_is_refused_with_its_number_and_what_is_wrong(rules, message):
    with pytest.raises(RuleError) as raised:
        Permissions(rules)
    assert message in str(raised.value)


def test_the_classroom_example_compiles():
    assert len(Permissions(CLASSROOM).rules or ()) == 4


# -- identities ------------------------------------------------------------------------------------


def test_jupyter_users_have_no_groups_and_are_not_admins():
    user = User("ada", "Ada", "Ada", "AL", None, "#fff")
    assert groups_of(user) == ()
    assert is_admin(user) is False
    channel_user = ChannelUser(user)
    assert channel_user.groups == ()
    assert channel_user.admin is False
    # What the source identity carries beyond the protocol stays readable.
    assert channel_user.avatar_url is None


def test_groups_and_admin_are_read_from_identities_that_have_them():
    person = Person("grace", groups=("teachers",))
    person.admin = True  # type: ignore[attr-defined]
    user = ChannelUser(person)
    assert user.groups == ("teachers",)
    assert user.admin is True
    assert groups_of(Person("ada", groups=["a", "b"])) == ("a", "b")  # type: ignore[arg-type]


def test_a_jupyter_user_without_groups_matches_only_star_and_username_principals():
    rules = [{"topic": "*", "join": ["@teachers", "ada"], "send": "*"}]
    user = User("ada", "Ada", "Ada", None, None, None)
    assert allowed(rules, user, JOIN, "x")
    assert not allowed(rules, User("alan"), JOIN, "x")
    assert allowed(rules, User("alan"), SEND, "x")


# -- the trait -------------------------------------------------------------------------------------


def test_the_permissions_trait_refuses_a_bad_rule_naming_it():
    from traitlets import TraitError

    from jupyter_channels.app import ChannelsApp

    app = ChannelsApp()
    assert app.permissions is None
    app.permissions = CLASSROOM
    with pytest.raises(TraitError) as raised:
        app.permissions = [*CLASSROOM[:1], {"topic": "group:*", "join": "@{group}"}]
    assert str(raised.value) == (
        "ChannelsApp.permissions rule 2 (topic 'group:*'), 'join': '@{group}' needs its "
        "placeholder in the topic pattern (only {user} and @{group} are principals)"
    )
    assert app.permissions == CLASSROOM
