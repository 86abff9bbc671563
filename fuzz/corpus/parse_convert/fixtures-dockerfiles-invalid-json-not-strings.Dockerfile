FROM alpine
CMD ["sh", 1]
