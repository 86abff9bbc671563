FROM alpine
COPY --chwon=app:app src/ /app/
