%% Keeps the feature-flags registry a trace boot of record-loaded-modules generates.
%%
%% RabbitMQ 3.10 generates the module rabbit_ff_registry at every boot (compile:forms), which
%% makes its boot load Erlang's compiler (38 modules, a tenth of the node's boot). It generates
%% none when the loaded registry already describes the feature flags and states it finds. So the
%% registry a boot on a node database generates, loaded by the boot script in place of rabbit's
%% stub, spares every later boot on a database in the same state the compiler (rabbitmq-node
%% checks that state: the node's feature-flags file is the one kept here beside the registry).
%%
%% capture(Dir), called before `rabbit boot`, writes to Dir/rabbit_ff_registry.beam each registry
%% the node compiles (the last one stays). It traces with the emulator's own trace functions, not
%% dbg, so that the trace boot loads no module for it (the boot script loads what it loaded).
-module(aiida_trace_registry).
-export([capture/1]).

capture(Dir) ->
    {module, compile} = code:ensure_loaded(compile),
    Tracer = spawn(fun() -> keep(Dir) end),
    1 = erlang:trace_pattern({compile, forms, 2}, [{'_', [], [{return_trace}]}], [local]),
    _ = erlang:trace(all, true, [call, {tracer, Tracer}]),
    ok.

keep(Dir) ->
    receive
        {trace, _, return_from, {compile, forms, 2}, {ok, rabbit_ff_registry, Beam}} -> write(Dir, Beam);
        {trace, _, return_from, {compile, forms, 2}, {ok, rabbit_ff_registry, Beam, _Warnings}} -> write(Dir, Beam);
        _ -> ok
    end,
    keep(Dir).

write(Dir, Beam) ->
    File = filename:join(Dir, "rabbit_ff_registry.beam"),
    ok = file:write_file(File ++ ".tmp", Beam),
    ok = file:rename(File ++ ".tmp", File).
