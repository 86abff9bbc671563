FROM alpine AS first
COPY --from=second /a /b
FROM alpine AS second
COPY --from=first /c /d
