-- The machine's limit for this shape of work: one-row UPDATE … RETURNING by primary key.
\set id random(1, 100000)
update bench_ceiling set n = n + 1 where id = :id returning n;
