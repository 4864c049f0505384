from __future__ import annotations

from gw_sqlanalysis.names import NameOp, mentions_names, name_operations


def test_prepare_keeps_the_statement_text_exactly_and_folds_the_name() -> None:
    text = "PREPARE S2 (int) AS delete from t2 /* c */ where x = $1 and y = 'a;b'; execute s2(1, 'a,b', f(1, 2))"
    assert name_operations(text) == [
        NameOp("prepare", "s2", text="delete from t2 /* c */ where x = $1 and y = 'a;b'"),
        NameOp("execute", "s2", args=("1", "'a,b'", "f(1, 2)"), statement=1),
    ]


def test_wrapped_execute_and_name_removals() -> None:
    assert name_operations('explain (analyze) execute "Q"') == [NameOp("execute", "Q", wrapped=True)]
    assert name_operations("create table x as execute q(3)") == [NameOp("execute", "q", args=("3",), wrapped=True)]
    ops = name_operations("deallocate prepare all; discard all; declare c cursor with hold for select 1; close c; "
                          "close all; deallocate x")
    assert ops is not None
    assert [(o.op, o.name, o.text) for o in ops] == [
        ("deallocate_all", "", ""), ("discard_all", "", ""), ("declare", "c", "select 1"), ("close", "c", ""),
        ("close_all", "", ""), ("deallocate", "x", "")]


def test_texts_that_do_nothing_to_names() -> None:
    assert name_operations("prepare transaction 'x'") == []
    assert name_operations("select 'prepare s as delete'") == []
    assert not mentions_names("select 1")
    assert name_operations("select 'unterminated") is None
