"""The statement text our PostgreSQL driver sends: named placeholders become ``$n``."""

from qtasks.backends.postgres import sql as q


def test_named_placeholders_become_numbered_once_per_name():
    text, names = q.positional("SELECT %(a)s, %(b)s::int[], %(a)s WHERE x LIKE '10%%'")
    assert text == "SELECT $1, $2::int[], $1 WHERE x LIKE '10%'"
    assert names == ("a", "b")


def test_every_exchange_statement_converts_to_the_names_it_was_given():
    sql = q.Sql("qtasks")
    for finish in (False, True):
        for start in (False, True):
            text, names = q.positional(q.exchange_sql(sql, finish, start, True, queues=2))
            assert "%(" not in text
            assert len(set(names)) == len(names)
            assert "$" + str(len(names)) in text
