"""Stage 1, compile: scheme YAML -> a validated, quoted, cross-checked rule table.

``remit compile`` runs :func:`remit.compiler.build.compile_all`.
"""
