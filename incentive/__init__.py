"""The ledger side of medswarm: chain access, contribution scores, rewards and audits.

Modules: ``chain`` (embedded EVM, JSON-RPC), ``deploy`` and ``deployment`` (contract addresses),
``clients`` (MemberClient, AdminClient), ``records`` (MemberRecord and views), ``candidates``
(the aggregator failover order), ``events`` (EventLog), ``rundir`` (a run's chain record),
``contribution`` (scores), ``shapley`` (leave-one-out and Shapley values, docs/contribution.md),
``audit`` with ``audit_replay``, ``audit_rewards`` and ``audit_report`` (tracing and checks),
``cli`` (``medswarm audit``). See docs/ledger.md.
"""
